#!/bin/sh
# Writes .data atomically (temp, then rename), answers TCP on $PORT with the greeting, and
# serves the Unix socket /run/sock/app.sock on the volume it shares with the client: each
# connection runs /app/answer.sh (uds is in the base image; busybox has no such server).
set -e
mkdir -p /data/database /data/logs
printf '{"ok":true}\n' > /data/database/.smoke.json.tmp
mv /data/database/.smoke.json.tmp /data/database/smoke.json
echo '{"event":"smoke_ready"}' >> /data/logs/smoke.jsonl
nc -ll -p "${PORT:-7777}" -e cat /app/greeting &
exec uds listen /run/sock/app.sock /app/answer.sh
