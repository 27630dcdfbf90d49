{{- define "nova-jobs.fullname" -}}
{{- printf "%s-exporter" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "nova-jobs.labels" -}}
app.kubernetes.io/name: nova-jobs-exporter
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: nova-jobs
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "nova-jobs.selectorLabels" -}}
app.kubernetes.io/name: nova-jobs-exporter
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "nova-jobs.instanceConfigMap" -}}
{{- default (printf "%s-instance" .Values.dagster.releaseName) .Values.dagster.instanceConfigMap -}}
{{- end -}}
