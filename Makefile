# jobgate — the two commands a newcomer needs: `make run` and `make test`.
# Both install missing Debian packages first (scripts/install-deps.sh).

BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_FUZZ ?= build-fuzz
MESON_OPTS ?= -Dwerror=true

.PHONY: all deps build build-asan build-fuzz run test test-quick bench clean help

all: build

help:
	@echo "make run        build and start the whole stack on 127.0.0.1:8080"
	@echo "make test       every test: self-tests, integration, ASan+UBSan, fuzz"
	@echo "make test-quick self-tests and integration tests on the normal build"
	@echo "make bench      the benchmark (bench/README.md)"

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

bench: build
	bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ)
