"""The tally of the script tests' named checks: a failing check prints its name and detail when it happens,
and finish() prints the counts and exits non-zero if any failed (an empty tally fails too: it checked nothing).
"""
import sys

passed = failed = 0


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


def finish():
    print(f"{passed} passed, {failed} failed")
    sys.exit(0 if failed == 0 and passed > 0 else 1)
