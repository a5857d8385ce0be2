{{- define "lameta.name" -}}{{ .Release.Name }}-lameta{{- end -}}

{{- define "lameta.image" -}}
{{ .root.Values.image.registry }}/{{ .root.Values.image.repository }}/{{ .component }}:{{ .root.Values.image.tag }}
{{- end -}}

{{- define "lameta.labels" -}}
app.kubernetes.io/part-of: lameta-ric
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{/* The selector labels of one component (dict "root" . "component" NAME). */}}
{{- define "lameta.selector" -}}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/name: {{ .component }}
{{- end -}}

{{- define "lameta.brokerHost" -}}
{{- if .Values.broker.host -}}{{ .Values.broker.host }}{{- else -}}{{ include "lameta.name" . }}-mosquitto{{- end -}}
{{- end -}}

{{/* The broker users: the `user` lines of files/acl (rendered from servicekit/acl.py), as JSON. */}}
{{- define "lameta.users" -}}
{{- $users := list -}}
{{- range .Files.Lines "files/acl" -}}
{{- if hasPrefix "user " . -}}{{- $users = append $users (trimPrefix "user " . | trim) -}}{{- end -}}
{{- end -}}
{{- toJson $users -}}
{{- end -}}

{{/* A user's values (broker.users.<user>), empty when not given. */}}
{{- define "lameta.userValues" -}}
{{- toJson (index (.root.Values.broker.users | default dict) .user | default dict) -}}
{{- end -}}

{{/* The Secret holding a user's password (key `password`). */}}
{{- define "lameta.userSecret" -}}
{{- $v := include "lameta.userValues" . | fromJson -}}
{{- $v.existingSecret | default (printf "%s-mqtt-%s" (include "lameta.name" .root) .user) -}}
{{- end -}}

{{/* Fails the install unless a user the chart runs has a password or a Secret. */}}
{{- define "lameta.requireUser" -}}
{{- $v := include "lameta.userValues" . | fromJson -}}
{{- if not (or $v.existingSecret $v.password) -}}
{{- fail (printf "broker user %s needs a password: set broker.users.%s.password (openssl rand -hex 16) or broker.users.%s.existingSecret" .user .user .user) -}}
{{- end -}}
{{- end -}}

{{/* Fails the install unless a TLS Secret is named (dict "root" . "key" NAME "what" TEXT). */}}
{{- define "lameta.tlsSecret" -}}
{{- $name := index .root.Values.tls .key -}}
{{- if not $name -}}
{{- fail (printf "tls.%s: name the Secret (ca.crt, tls.crt, tls.key) with %s; deploy/TRUST.md says how to make it" .key .what) -}}
{{- end -}}
{{- $name -}}
{{- end -}}

{{- define "lameta.caSecret" -}}
{{- .Values.tls.caSecret | default (include "lameta.tlsSecret" (dict "root" . "key" "brokerSecret" "what" "the broker's certificate, or set tls.caSecret")) -}}
{{- end -}}

{{/*
The environment of an MQTT client (dict "root" . "user" USER "prefix" SIM|XAPP): the
user's password from its Secret, the mqtts:// URL, the CA at /run/lameta/ca/ca.crt.
*/}}
{{- define "lameta.mqttEnv" -}}
{{- include "lameta.requireUser" . -}}
- name: MQTT_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ include "lameta.userSecret" . }}, key: password}}
- name: {{ .prefix }}_BROKER
  value: "mqtts://{{ .user }}:$(MQTT_PASSWORD)@{{ include "lameta.brokerHost" .root }}:{{ .root.Values.broker.port }}"
- name: {{ .prefix }}_TLS_CA
  value: /run/lameta/ca/ca.crt
{{- end -}}

{{/* Containers run as an unprivileged user that cannot gain privileges. */}}
{{- define "lameta.containerSecurity" -}}
allowPrivilegeEscalation: false
capabilities: {drop: [ALL]}
{{- end -}}

{{/* True when several xApps share the requests (replicas > 1 or autoscaling). */}}
{{- define "lameta.xappShared" -}}
{{- if or (gt (int .Values.xapp.replicas) 1) .Values.xapp.autoscaling.enabled }}true{{ end }}
{{- end }}

{{/* True when the rApp writes its gRPC access log for the guard (guard.accessLog). */}}
{{- define "lameta.accessLog" -}}
{{- if and .Values.guard.enabled .Values.guard.accessLog.enabled }}true{{ end }}
{{- end }}

{{/* The ReadWriteMany claim of the rApp's access log, shared by the rApp's pod and the
broker's (where the guard runs). */}}
{{- define "lameta.accessLogClaim" -}}
{{- .Values.guard.accessLog.existingClaim | default (printf "%s-rapp-access-log" (include "lameta.name" .)) }}
{{- end }}
