#!/usr/bin/env bash
# Runs phase 1 under valgrind's memcheck while a short mix of traffic goes
# through it (good and bad requests, uploads, vanished clients, upstream
# faults), then stops it with SIGTERM and prints memcheck's verdict.
# Expect "ERROR SUMMARY: 0 errors" and "definitely lost: 0 bytes".
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)"; exit 1; }
cargo build --release -p origin -p phase1-blocking

tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT

./target/release/origin --listen 127.0.0.1:0 >"$tmp/origin.out" &
for _ in $(seq 100); do grep -q listening "$tmp/origin.out" && break; sleep 0.05; done
origin=$(sed -n 's/^listening on //p' "$tmp/origin.out")

valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite,indirect,possible \
    --error-exitcode=99 --log-file="$tmp/valgrind.log" \
    ./target/release/phase1-blocking --listen 127.0.0.1:0 --upstream "$origin" \
    --upstream-timeout 2 --header-timeout 2 --log-level warn >"$tmp/proxy.out" &
vg=$!
for _ in $(seq 400); do grep -q listening "$tmp/proxy.out" && break; sleep 0.05; done
proxy=$(sed -n 's/^listening on //p' "$tmp/proxy.out")
echo "origin $origin, phase 1 under valgrind at $proxy"

# Many of these fail on purpose (resets, 502s): only the proxy's health counts.
c() { curl -s -o /dev/null "$@" || true; }
head -c 1048576 /dev/urandom >"$tmp/upload"
for round in 1 2 3; do
    c "http://$proxy/bytes/1048576"
    c "http://$proxy/chunked/100000"
    c --http1.0 "http://$proxy/chunked/100000"
    c "http://$proxy/close/5000"
    c -X POST --data-binary @"$tmp/upload" "http://$proxy/echo"
    c -H 'Transfer-Encoding: chunked' --data-binary @"$tmp/upload" "http://$proxy/echo"
    c -H 'Expect: 100-continue' --data-binary @"$tmp/upload" "http://$proxy/reject"
    c "http://$proxy/fault/malformed"
    c "http://$proxy/fault/truncate/100000"
    c "http://$proxy/fault/reset"
    c "http://$proxy/fault/silent"      # 504 after 2 s
    printf 'GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n' \
        | curl -s -o /dev/null --max-time 2 "telnet://$proxy" || true
    printf 'GARBAGE\r\n\r\n' | curl -s -o /dev/null --max-time 2 "telnet://$proxy" || true
    # A client that vanishes mid-download.
    c --max-time 0.05 "http://$proxy/bytes/67108864"
done
echo "traffic done; stopping phase 1 with SIGTERM"
kill -TERM "$vg"
status=0
wait "$vg" || status=$?
echo "phase 1 exit status under valgrind: $status"
# The stack of any leak memcheck reports, then the summary.
grep -A14 -E "are (definitely|possibly) lost in loss record" "$tmp/valgrind.log" | sed 's/^==[0-9]*== //' || true
grep -E "ERROR SUMMARY|definitely lost|indirectly lost|possibly lost|still reachable|All heap blocks" "$tmp/valgrind.log" | sed 's/^==[0-9]*== //'
exit "$status"
