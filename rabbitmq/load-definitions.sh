#!/usr/bin/env sh
# Load rabbitmq/definitions.json into a local rabbitmq-server (no Docker).
#
# Idempotent: importing again re-declares the same exchange, queues and bindings and resets the
# cerebro user's password; nothing else is touched (the guest user and other definitions stay).
# Needs `rabbitmqctl import_definitions` (RabbitMQ >= 3.8.2) and the rights to run rabbitmqctl
# (usually root or the rabbitmq user). Usage: rabbitmq/load-definitions.sh [definitions.json]
set -eu

here=$(cd "$(dirname "$0")" && pwd)
definitions=${1:-"$here/definitions.json"}

if ! command -v rabbitmqctl >/dev/null 2>&1; then
    echo "rabbitmqctl not found: install rabbitmq-server, or use docker compose up" >&2
    exit 1
fi
if ! rabbitmqctl -q status >/dev/null 2>&1; then
    echo "RabbitMQ is not running: start it with 'rabbitmq-server -detached'" >&2
    exit 1
fi
if ! rabbitmqctl help import_definitions >/dev/null 2>&1; then
    echo "This RabbitMQ has no 'rabbitmqctl import_definitions' (needs >= 3.8.2);" >&2
    echo "enable the management plugin and POST the file to /api/definitions instead." >&2
    exit 1
fi

rabbitmqctl import_definitions "$definitions"
echo "Loaded $definitions:"
rabbitmqctl -q list_bindings source_name routing_key destination_name | grep '^event\.exchange' || true
