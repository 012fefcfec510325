#!/bin/sh
# docker-compose.yml's RabbitMQ entry point: write /etc/rabbitmq/definitions.json from
# definitions.template.json, replacing each @@NAME@@ with the environment variable NAME
# (the passwords, from .env; never committed), then start the broker as the image does.
# Passwords are letters and digits only: they go into JSON here and into AMQP URLs.
set -eu
template=/etc/rabbitmq/wechat/definitions.template.json
target=/etc/rabbitmq/definitions.json
script=""
for name in $(grep -o '@@[A-Z0-9_]*@@' "$template" | tr -d @ | sort -u); do
    eval "value=\${$name:-}"
    case "$value" in
        "" | *[!A-Za-z0-9]*)
            echo "render-definitions: set $name (letters and digits only) in .env" >&2
            exit 78
            ;;
    esac
    script="$script s/@@$name@@/$value/g;"
done
umask 077
sed -e "$script" "$template" > "$target"
chown rabbitmq:rabbitmq "$target" 2>/dev/null || true
exec docker-entrypoint.sh "$@"
