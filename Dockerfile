# One image for both processes: the API (default command) and the worker
# (`node --import tsx apps/worker/src/main.ts`, see docker-compose.yml).
FROM node:20-bookworm-slim

# pg_dump must be at least as new as the server's major version. Debian bookworm ships
# PostgreSQL 15 client tools, which match the postgres:15 of docker-compose.yml; a newer server
# needs a newer postgresql-client. zstd compresses the dump stream; util-linux brings setpriv,
# through which pg_dump and zstd die with the worker.
RUN apt-get update \
  && apt-get install -y --no-install-recommends postgresql-client zstd util-linux ca-certificates \
  && rm -rf /var/lib/apt/lists/*

WORKDIR /app
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=5000 \
    BACKUP_DIR=/app/backups

# Manifests first, so that `npm ci` is cached until a dependency changes. Every workspace's
# package.json must be here: npm ci refuses a lockfile that names a workspace it cannot see.
COPY package.json package-lock.json ./
COPY apps/api/package.json apps/api/
COPY apps/worker/package.json apps/worker/
COPY packages/core/package.json packages/core/
COPY packages/engine/package.json packages/engine/
COPY packages/notify/package.json packages/notify/
COPY packages/pg/package.json packages/pg/
COPY packages/queue/package.json packages/queue/
COPY packages/storage/package.json packages/storage/
# tsx runs the TypeScript sources as they are, so the build tools and test runners stay out.
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

COPY tsconfig.json ./
COPY packages ./packages
COPY apps ./apps

RUN mkdir -p /app/backups && chown node:node /app/backups
VOLUME /app/backups

USER node
EXPOSE 5000
CMD ["node", "--import", "tsx", "apps/api/src/main.ts"]
