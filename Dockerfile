# Multi-stage build: compile in the Rust image, run in a slim image as a non-root user.
#
# Build arguments (defaults: the public images; a mirror or a local stand-in can replace them):
#   RUST_IMAGE     the build stage's toolchain image
#   RUNTIME_IMAGE  the runtime stage's base image
#   HERALD_BINARY  "build" (default) compiles herald in RUST_IMAGE; "prebuilt" takes
#                  target/release/herald from the build context instead (built on a host with the
#                  runtime image's glibc or older, e.g. Debian bookworm; needs BuildKit, which
#                  skips the stage that is not used). tests/docker/smoke builds it that way.
# The default build works with BuildKit and with the legacy builder (DOCKER_BUILDKIT=0).
ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim
ARG HERALD_BINARY=build

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin herald

FROM scratch AS prebuilt
# (Cargo.toml rides along: the legacy builder builds every stage, and a COPY whose only source is
# missing would fail the default build where no binary was built)
COPY Cargo.toml target/release/herald* /src/target/release/

FROM ${HERALD_BINARY} AS binary

FROM ${RUNTIME_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home herald
COPY --from=binary /src/target/release/herald /usr/local/bin/herald
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
