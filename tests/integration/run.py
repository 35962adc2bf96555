"""run — runs the integration tests: every test_* function of every
test_*.py module here (or, with --dir DIR first, in DIR: the Python
client's tests), or those named on the command line (module or
module::function). Prints one line per test and a closing
'N passed, N failed' line (and N skipped: a test raising harness.Skip
does not apply to this run); exits non-zero when any failed."""
import importlib
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from harness import Skip  # noqa: E402  (after the path it is found on)


def main(args):
    selected = []
    tests_dir = HERE
    if args[:1] == ["--dir"] and len(args) > 1:
        tests_dir = os.path.abspath(args[1])
        args = args[2:]
        sys.path.insert(0, tests_dir)
    modules = sorted(f[:-3] for f in os.listdir(tests_dir) if f.startswith("test_") and f.endswith(".py"))
    for name in modules:
        module = importlib.import_module(name)
        for attr in sorted(dir(module), key=lambda a: getattr(getattr(module, a), "__code__", None)
                           and getattr(module, a).__code__.co_firstlineno or 0):
            if attr.startswith("test_") and callable(getattr(module, attr)):
                full = name + "::" + attr
                if not args or any(full == a or name == a or attr == a for a in args):
                    selected.append((full, getattr(module, attr)))
    passed = failed = skipped = 0
    for full, test in selected:
        started = time.monotonic()
        try:
            test()
        except Skip as reason:
            skipped += 1
            print("skip %s: %s" % (full, reason), flush=True)
        except Exception:
            failed += 1
            print("FAIL %s (%.1fs)" % (full, time.monotonic() - started), flush=True)
            traceback.print_exc()
        else:
            passed += 1
            print("ok   %s (%.1fs)" % (full, time.monotonic() - started), flush=True)
    print("integration: %d passed, %d failed%s"
          % (passed, failed, ", %d skipped" % skipped if skipped else ""))
    return 1 if failed or not selected else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
