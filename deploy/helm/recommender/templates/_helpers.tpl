{{/* The release's base name: the release name, with the chart's appended unless it has it. */}}
{{- define "recommender.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "recommender.qdrantName" -}}
{{- printf "%s-qdrant" (include "recommender.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "recommender.secretName" -}}
{{- .Values.secrets.existingSecret | default (include "recommender.fullname" .) -}}
{{- end -}}

{{- define "recommender.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* Selector labels of one component (recommender, qdrant, backfill). */}}
{{- define "recommender.selectorLabels" -}}
app.kubernetes.io/name: {{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{- define "recommender.labels" -}}
{{ include "recommender.selectorLabels" . }}
app.kubernetes.io/part-of: {{ .root.Chart.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{/* Qdrant's gRPC URL: the bundled StatefulSet's Service, or the one configured. */}}
{{- define "recommender.qdrantURL" -}}
{{- if .Values.qdrant.enabled -}}
{{- printf "http://%s:6334" (include "recommender.qdrantName" .) -}}
{{- else -}}
{{- .Values.qdrant.url -}}
{{- end -}}
{{- end -}}

{{/* A secretKeyRef env var: required, or optional when a user-managed Secret may lack the key. */}}
{{- define "recommender.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "recommender.secretName" .root }}
      key: {{ .key }}
      {{- if get . "optional" }}
      optional: true
      {{- end }}
{{- end -}}

{{/* Refuses values that would install a deployment that cannot work, saying what to set. */}}
{{- define "recommender.validate" -}}
{{- $s := .Values.secrets -}}
{{- if and (not $s.existingSecret) (not $s.apiKeys) -}}
{{- fail "secrets.apiKeys (\"write:<key>,read:<key>\") or secrets.existingSecret is required: the service refuses to run keyless" -}}
{{- end -}}
{{- if and .Values.qdrant.enabled (not $s.existingSecret) (not $s.qdrantApiKey) -}}
{{- fail "secrets.qdrantApiKey or secrets.existingSecret is required with the bundled Qdrant (qdrant.enabled): it would run without a key" -}}
{{- end -}}
{{- if and (not .Values.qdrant.enabled) (not .Values.qdrant.url) -}}
{{- fail "qdrant.url is required with qdrant.enabled=false (the service is stateless: its store is Qdrant)" -}}
{{- end -}}
{{- if and .Values.backfill.enabled (not $s.existingSecret) (not $s.backfillApiKey) -}}
{{- fail "secrets.backfillApiKey (a write key of secrets.apiKeys) or secrets.existingSecret is required with backfill.enabled" -}}
{{- end -}}
{{- if and .Values.embedding.baseURL (not .Values.embedding.model) -}}
{{- fail "embedding.model is required with embedding.baseURL" -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- fail "autoscaling.minReplicas is above autoscaling.maxReplicas" -}}
{{- end -}}
{{- end -}}
