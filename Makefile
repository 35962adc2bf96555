# jobgate — the two commands a newcomer needs: `make run` and `make test`.
# Both install missing Debian packages first (scripts/install-deps.sh).

BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_FUZZ ?= build-fuzz
MESON_OPTS ?= -Dwerror=true

.PHONY: all deps build build-asan build-fuzz run test test-quick test-faults bench bench-record clean help docker-image test-deploy

all: build

help:
	@echo "make run        build and start the whole stack on 127.0.0.1:8080"
	@echo "make test       every test: self-tests, integration, ASan+UBSan, fuzz"
	@echo "make test-quick self-tests and integration tests on the normal build"
	@echo "make test-faults the long fault suite (24 rounds) and the 60 s overload test"
	@echo "make bench      the benchmark (bench/README.md); report in build/bench-results/"
	@echo "make bench-record  the same, written as the run of record (bench/results/record.*)"
	@echo "make docker-image  the Docker image $(IMAGE) (deploy/Dockerfile)"
	@echo "make test-deploy   the stack in Docker with compose, scaled (tests/deploy/run.sh)"

deps:
	@scripts/install-deps.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_OPTS)

build: deps $(BUILD)/build.ninja
	meson compile -C $(BUILD)

$(BUILD_ASAN)/build.ninja:
	meson setup $(BUILD_ASAN) $(MESON_OPTS) -Db_sanitize=address,undefined -Db_lundef=false \
	    -Dc_args=-fno-sanitize-recover=undefined -Dbuildtype=debug

build-asan: deps $(BUILD_ASAN)/build.ninja
	meson compile -C $(BUILD_ASAN)

$(BUILD_FUZZ)/build.ninja:
	CC=clang meson setup $(BUILD_FUZZ) $(MESON_OPTS) -Dfuzz=true -Dbuildtype=debug

build-fuzz: deps $(BUILD_FUZZ)/build.ninja
	meson compile -C $(BUILD_FUZZ)

run: build
	scripts/run-local.sh $(BUILD)

test: build build-asan build-fuzz
	tests/run-all.sh $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ)

test-quick: build
	tests/run-all.sh $(BUILD)

# The long variants of tests/faults (the fast ones run in `make test`).
test-faults: build
	JOBGATE_BUILD=$(BUILD) python3 tests/faults/faults.py --rounds 24
	JOBGATE_BUILD=$(BUILD) python3 tests/faults/faults.py --rounds 8 --faults kill-worker,kill-broker,kill-gateway,stop-worker,stop-broker
	JOBGATE_BUILD=$(BUILD) python3 tests/faults/overload.py

bench: build
	bench/run.sh $(BUILD)

# The run of record: bench/results/record.* replaced (history in git).
bench-record: build
	BENCH_RECORD=1 bench/run.sh $(BUILD)

# The image: its base (debian:bookworm-slim) is made locally with debootstrap
# when it cannot be pulled; builds use the host network (no bridge here).
IMAGE ?= jobgate:latest

docker-image:
	scripts/docker-engine.sh
	deploy/base-image.sh debian:bookworm-slim
	docker build --network host --force-rm -f deploy/Dockerfile -t $(IMAGE) .

test-deploy:
	tests/deploy/run.sh

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ)
