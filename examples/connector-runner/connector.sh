#!/bin/sh
# A JSON-RPC 2.0 connector on stdio: answers "ping" and "echo", one request per line.
while IFS= read -r line; do
  id=$(echo "$line" | sed -n 's/.*"id":\([0-9]*\).*/\1/p')
  case "$line" in
    *'"method":"ping"'*) echo "{\"jsonrpc\":\"2.0\",\"id\":$id,\"result\":\"pong\"}" ;;
    *'"method":"echo"'*) echo "{\"jsonrpc\":\"2.0\",\"id\":$id,\"result\":$(echo "$line" | sed -n 's/.*"params":\(.*\)}$/\1/p')}" ;;
    *) echo "{\"jsonrpc\":\"2.0\",\"id\":${id:-null},\"error\":{\"code\":-32601,\"message\":\"method not found\"}}" ;;
  esac
done
