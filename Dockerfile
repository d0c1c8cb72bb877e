# Multi-stage build: compile in the Rust image, run in a slim image as a non-root user.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin herald

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home herald
COPY --from=build /src/target/release/herald /usr/local/bin/herald
USER herald
# Mount your config at /etc/herald/config.toml; secrets come from the environment.
ENV HERALD_HOST=0.0.0.0
# 6001: WebSocket and REST; 9601: /metrics (bind it to 0.0.0.0 in the config to scrape it).
EXPOSE 6001 9601
# `herald health` reads the same config file and HERALD_* environment as the server, so the
# check follows whatever port [server] (or HERALD_PORT) sets.
HEALTHCHECK --interval=10s --timeout=5s CMD ["herald", "health", "--config", "/etc/herald/config.toml"]
ENTRYPOINT ["herald"]
CMD ["serve", "--config", "/etc/herald/config.toml"]
