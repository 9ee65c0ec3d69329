{{/* Chart name, at most 63 characters (a DNS label). */}}
{{- define "renku-notebooks.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Name of the chart's resources. values.yaml sets fullnameOverride so that the
jupyterhub values (Service URL, ConfigMap name) can refer to fixed names.
*/}}
{{- define "renku-notebooks.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "renku-notebooks.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "renku-notebooks.selectorLabels" -}}
app.kubernetes.io/name: {{ include "renku-notebooks.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "renku-notebooks.labels" -}}
helm.sh/chart: {{ include "renku-notebooks.chart" . }}
{{ include "renku-notebooks.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "renku-notebooks.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "renku-notebooks.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The service's URL prefix, always ending in "/". */}}
{{- define "renku-notebooks.prefix" -}}
{{- printf "%s/" (trimSuffix "/" .Values.config.jupyterhub.servicePrefix) }}
{{- end }}

{{/* Name of the hub service entry, from the prefix /services/<name>/. */}}
{{- define "renku-notebooks.hubServiceName" -}}
{{- trimPrefix "/services/" (trimSuffix "/" .Values.config.jupyterhub.servicePrefix) }}
{{- end }}

{{/*
Where the JupyterHub API token comes from, in this order: an existing Secret,
the chart's own Secret (apiToken.value), or the token Zero to JupyterHub
generates for the hub service entry and keeps in its hub Secret.
*/}}
{{- define "renku-notebooks.apiTokenSecretName" -}}
{{- if .Values.apiToken.existingSecret }}
{{- .Values.apiToken.existingSecret }}
{{- else if .Values.apiToken.value }}
{{- include "renku-notebooks.fullname" . }}
{{- else if .Values.jupyterhub.enabled }}
{{- include "jupyterhub.hub.fullname" . }}
{{- else }}
{{- fail "apiToken: set apiToken.value or apiToken.existingSecret when jupyterhub.enabled is false" }}
{{- end }}
{{- end }}

{{- define "renku-notebooks.apiTokenSecretKey" -}}
{{- if .Values.apiToken.existingSecret }}
{{- .Values.apiToken.existingSecretKey }}
{{- else if .Values.apiToken.value }}
{{- print "api-token" }}
{{- else }}
{{- printf "hub.services.%s.apiToken" (include "renku-notebooks.hubServiceName" .) }}
{{- end }}
{{- end }}

{{/*
The ServiceAccount Zero to JupyterHub's hub runs as: hub.serviceAccount.name, or
the hub's own name when z2jh creates it (its default), else "default".
*/}}
{{- define "renku-notebooks.hubServiceAccountName" -}}
{{- $serviceAccount := dig "hub" "serviceAccount" (dict) (.Values.jupyterhub | default dict) }}
{{- if $serviceAccount.name }}
{{- $serviceAccount.name }}
{{- else if (dig "create" true $serviceAccount) }}
{{- include "jupyterhub.hub.fullname" . }}
{{- else }}
{{- print "default" }}
{{- end }}
{{- end }}

{{/*
server-options.json, as the service and the hub's spawner config read it: an object of
option name to option, from the list in `serverOptions`.
*/}}
{{- define "renku-notebooks.serverOptionsJson" -}}
{{- $options := dict }}
{{- range .Values.serverOptions }}
{{- if hasKey $options .name }}
{{- fail (printf "serverOptions: %q is listed twice" .name) }}
{{- end }}
{{- $_ := set $options .name (omit . "name") }}
{{- end }}
{{- toPrettyJson $options }}
{{- end }}

{{/*
The service's environment: the Deployment's and the session volume sweep's.
*/}}
{{- define "renku-notebooks.env" -}}
- name: HOST
  value: "0.0.0.0"
- name: PORT
  value: "8000"
- name: LOG_LEVEL
  value: {{ .Values.config.logLevel | quote }}
- name: JUPYTERHUB_API_URL
  value: {{ .Values.config.jupyterhub.apiUrl | quote }}
- name: JUPYTERHUB_API_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "renku-notebooks.apiTokenSecretName" . }}
      key: {{ include "renku-notebooks.apiTokenSecretKey" . }}
- name: JUPYTERHUB_SERVICE_PREFIX
  value: {{ include "renku-notebooks.prefix" . | quote }}
- name: JUPYTERHUB_BASE_URL
  value: {{ .Values.config.jupyterhub.baseUrl | quote }}
{{- with .Values.config.jupyterhub.origin }}
- name: JUPYTERHUB_ORIGIN
  value: {{ . | quote }}
{{- end }}
- name: JUPYTERHUB_CLIENT_ID
  value: {{ .Values.config.jupyterhub.clientId | quote }}
{{- with .Values.config.jupyterhub.oauthCallbackUrl }}
- name: JUPYTERHUB_OAUTH_CALLBACK_URL
  value: {{ . | quote }}
{{- end }}
- name: GITLAB_URL
  value: {{ .Values.config.gitlab.url | quote }}
{{- with .Values.config.gitlab.imageRegistry }}
- name: IMAGE_REGISTRY
  value: {{ . | quote }}
{{- end }}
- name: NOTEBOOKS_DEFAULT_IMAGE
  value: {{ .Values.config.defaultImage | quote }}
- name: NOTEBOOKS_MIN_ACCESS_LEVEL
  value: {{ .Values.config.minAccessLevel | quote }}
- name: NOTEBOOKS_SERVER_OPTIONS_PATH
  value: /etc/renku-notebooks/server-options.json
- name: KUBERNETES_NAMESPACE
  value: {{ .Values.config.kubernetesNamespace | default .Release.Namespace | quote }}
- name: NOTEBOOKS_UPSTREAM_TIMEOUT
  value: {{ .Values.config.upstreamTimeoutSeconds | quote }}
- name: NOTEBOOKS_SESSION_VOLUMES
  value: {{ .Values.sessionVolumes.enabled | quote }}
- name: NOTEBOOKS_SESSION_VOLUME_RETENTION_HOURS
  value: {{ .Values.sessionVolumes.retentionHours | quote }}
- name: METRICS_PORT
  value: {{ ternary .Values.metrics.port 0 .Values.metrics.enabled | quote }}
{{- with .Values.extraEnv }}
{{- toYaml . | nindent 0 }}
{{- end }}
{{- end }}
