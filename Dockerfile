# jpki on Debian 12 with SoftHSM2: `docker build -t jpki . && docker run -p 8000:8000 jpki`
# The data directory (SQLite, SoftHSM token, generated PINs) is a volume; mount your own to keep it.
FROM debian:bookworm-slim

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv python3-dev gcc softhsm2 openssl ca-certificates libpcsclite-dev \
 && rm -rf /var/lib/apt/lists/*

RUN useradd --system --create-home --home-dir /srv/jpki jpki
WORKDIR /srv/jpki/app
COPY pyproject.toml README.md ./
COPY jpki ./jpki
COPY api ./api
COPY hsm ./hsm
COPY migrations ./migrations
COPY certs-dev ./certs-dev
RUN python3 -m venv /srv/jpki/venv \
 && /srv/jpki/venv/bin/pip install --no-cache-dir . \
 && chown -R jpki:jpki /srv/jpki

USER jpki
ENV JPKI_DATA_DIR=/srv/jpki/data \
    JPKI_RECIPE=/srv/jpki/app/certs-dev/recipe.toml \
    PATH=/srv/jpki/venv/bin:$PATH
VOLUME /srv/jpki/data
EXPOSE 8000
CMD ["sh", "-c", "jpki init && exec jpki serve --host 0.0.0.0 --port 8000"]
