{{- define "lameta.name" -}}{{ .Release.Name }}-lameta{{- end -}}

{{- define "lameta.image" -}}
{{ .root.Values.image.registry }}/{{ .root.Values.image.repository }}/{{ .component }}:{{ .root.Values.image.tag }}
{{- end -}}

{{- define "lameta.labels" -}}
app.kubernetes.io/part-of: lameta-ric
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "lameta.brokerHost" -}}
{{- if .Values.broker.host -}}{{ .Values.broker.host }}{{- else -}}{{ include "lameta.name" . }}-mosquitto{{- end -}}
{{- end -}}

{{- define "lameta.brokerSecret" -}}
{{- if .Values.broker.existingSecret -}}{{ .Values.broker.existingSecret }}{{- else -}}{{ include "lameta.name" . }}-broker{{- end -}}
{{- end -}}

{{/* Env entries giving a broker URL with credentials from the Secret. */}}
{{- define "lameta.brokerEnv" -}}
- name: MQTT_USER
  valueFrom: {secretKeyRef: {name: {{ include "lameta.brokerSecret" . }}, key: username}}
- name: MQTT_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ include "lameta.brokerSecret" . }}, key: password}}
{{- end -}}
