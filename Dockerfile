# msrpd in a container: built in a Rust image, run in a slim Debian as an unprivileged user.
#   docker build -t msrpd .
#   docker run -d --name msrpd -p 2855:2855 -p 5060:5060/udp -p 5060:5060 -p 2857:2857 \
#       -v msrpd-data:/var/lib/msrpd msrpd
#   docker exec -it msrpd msrpd user add alice@example.com
# Mount your own configuration over /etc/msrpd/msrpd.toml (and certificates beside it);
# `docker kill -s HUP msrpd` reloads certificates and the log filter.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin msrpd

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home-dir /var/lib/msrpd --create-home --shell /usr/sbin/nologin msrpd
COPY --from=build /src/target/release/msrpd /usr/local/bin/msrpd
COPY contrib/docker/msrpd.toml /etc/msrpd/msrpd.toml
ENV MSRPD_CONFIG=/etc/msrpd/msrpd.toml MALLOC_ARENA_MAX=2
USER msrpd
VOLUME /var/lib/msrpd
# MSRP relay (TLS), SIP (UDP and TCP), chat MSRP, metrics.
EXPOSE 2855 5060/udp 5060 2857 9090
# /health answers 200 while msrpd serves (no curl in the image: bash's /dev/tcp).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9090 && printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/msrpd"]
CMD ["serve"]
