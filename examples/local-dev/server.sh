#!/bin/sh
# Writes .data atomically (temp, then rename), leaves a mark on the shared volume and
# answers TCP with the greeting.
set -e
mkdir -p /data/database /data/logs
printf '{"ok":true}\n' > /data/database/.smoke.json.tmp
mv /data/database/.smoke.json.tmp /data/database/smoke.json
echo '{"event":"smoke_ready"}' >> /data/logs/smoke.jsonl
echo ready > /run/sock/server.ready
exec nc -ll -p "${PORT:-7777}" -e cat /app/greeting
