# syntax=docker/dockerfile:1

# ---- build: compile TypeScript with the dev dependencies -------------------
FROM node:20-bookworm-slim AS build
WORKDIR /app
# Dependencies first so source changes do not invalidate the install layer.
COPY package.json package-lock.json .npmrc ./
RUN npm ci --ignore-scripts
# .dockerignore keeps tests, the chart, docs and local state out of the context.
COPY . .
RUN npm run build

# ---- runtime: production dependencies, compiled output, bundled defaults ---
FROM node:20-bookworm-slim AS runtime
# tini as PID 1 forwards SIGTERM to node and reaps zombies, so the service
# can close gracefully when Kubernetes stops the pod.
RUN apt-get update \
  && apt-get install -y --no-install-recommends tini \
  && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY --from=build /app/dist ./dist
# The default server options (NOTEBOOKS_SERVER_OPTIONS_PATH overrides them).
COPY config ./config
# Files stay owned by root: the service only reads them (read-only root filesystem in the chart).
USER node
ENV PORT=8000
EXPOSE 8000
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "dist/server.js"]
