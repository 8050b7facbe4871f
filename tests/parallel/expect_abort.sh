#!/bin/sh
# Usage: expect_abort.sh <expected message> <command...>
# Passes when the command exits non-zero and its output contains the message.
want="$1"; shift
out=$("$@" 2>&1); rc=$?
printf '%s\n' "$out"
if [ "$rc" -eq 0 ]; then echo "expect_abort: command exited 0, wanted a failure"; exit 1; fi
case "$out" in *"$want"*) echo "expect_abort: exit $rc with the expected message"; exit 0;; esac
echo "expect_abort: message '$want' not found"; exit 1
