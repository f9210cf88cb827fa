#!/bin/sh
# One Unix-socket connection: the request `ping` gets the greeting.
read -r request || request=
if [ "$request" = ping ]; then
  cat /app/greeting
else
  echo "unknown request: $request"
fi
