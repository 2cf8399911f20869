# The worker image: one image for Cloud Run (services and jobs) and AWS Lambda (container
# image, custom runtime). Build: docker build -t helios-infra .
#   Cloud Run service: default command (`worker serve`, listens on $PORT).
#   Cloud Run job:     command `worker run`, with --job/--chunk from the environment
#                      (HELIOS_JOB_URL, CLOUD_RUN_TASK_INDEX; see docs/deploy-gcp.md).
#   Lambda:            image config Command = ["worker", "lambda"].
FROM rust:1-bookworm AS build
WORKDIR /src
# The job store links the system's SQLite, archives its zstd (scripts/setup.sh installs the same).
RUN apt-get update && apt-get install -y --no-install-recommends libsqlite3-dev libzstd-dev pkg-config && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin helios-infra

FROM debian:bookworm-slim
# The workers' font set (README, "Fonts"): the same on a laptop (scripts/setup.sh), in
# Lambda, Cloud Run and Kubernetes.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg chromium-headless-shell ca-certificates libsqlite3-0 libzstd1 \
    fonts-dejavu-core fonts-liberation fonts-noto-core fonts-noto-cjk fonts-noto-color-emoji \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/helios-infra /usr/local/bin/helios-infra
# Chromium and FFmpeg write temporary files; Lambda only allows /tmp.
ENV TMPDIR=/tmp HELIOS_CHROMIUM=/usr/lib/chromium/chromium-headless-shell
ENTRYPOINT ["/usr/local/bin/helios-infra"]
CMD ["worker", "serve"]
