#!/bin/sh
# Every few seconds a round trip over the server's Unix socket on the shared volume:
# sends `ping` and logs uds_ok only when the answer is the greeting.
trap 'exit 0' TERM
want=$(cat /app/greeting)
while :; do
  if got=$(echo ping | uds connect -t 2 /run/sock/app.sock 2>&1) && [ "$got" = "$want" ]; then
    echo uds_ok
  else
    echo "uds_failed: $got"
  fi
  sleep 3 &
  wait $!
done
