# Stand-in for the redis:7-alpine image, for tests/docker/smoke only (no registry is reachable
# there): Debian's redis-server, started the way the official image starts it.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && printf '%s\n' '#!/bin/sh' \
       '# like the official image: reachable from the other containers, so no protected mode' \
       'if [ "$1" = redis-server ]; then shift; set -- redis-server --protected-mode no "$@"; fi' \
       'exec "$@"' > /usr/local/bin/docker-entrypoint.sh \
    && chmod 755 /usr/local/bin/docker-entrypoint.sh
WORKDIR /var/lib/redis
USER redis
EXPOSE 6379
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
