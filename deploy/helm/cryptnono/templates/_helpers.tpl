{{/* Names and labels, following `helm create` conventions so `support-cryptnono` and
     `app.kubernetes.io/name=cryptnono` mean what cryptnono's documentation says. */}}
{{- define "cryptnono.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cryptnono.fullname" -}}
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

{{- define "cryptnono.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cryptnono.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cryptnono.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "cryptnono.labels" -}}
helm.sh/chart: {{ include "cryptnono.chart" . }}
{{ include "cryptnono.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "cryptnono.image" -}}
{{- printf "%s:%s" .Values.image.repository (toString (default .Chart.AppVersion .Values.image.tag)) }}
{{- end }}

{{/* The detectors this chart can run. monero and tcpflowkiller are accepted by the
     schema (cryptnono's values) but have no program here yet: enabling one fails the
     install rather than deploying something that isn't there. */}}
{{- define "cryptnono.checkDetectors" -}}
{{- if .Values.detectors.monero.enabled }}
{{- fail "detectors.monero.enabled=true: the monero detector is not implemented in this cryptnono yet, so there is nothing to deploy for it. Set detectors.monero.enabled=false (execwhacker works; see the chart README)." }}
{{- end }}
{{- if .Values.detectors.tcpflowkiller.enabled }}
{{- fail "detectors.tcpflowkiller.enabled=true: the tcpflowkiller detector is not implemented in this cryptnono yet, so there is nothing to deploy for it. Set detectors.tcpflowkiller.enabled=false (execwhacker works; see the chart README)." }}
{{- end }}
{{- end }}

{{/* Whether the pods are deployed at all: without an enabled detector there is
     nothing to enforce. */}}
{{- define "cryptnono.enabled" -}}
{{- if .Values.detectors.execwhacker.enabled }}true{{ end }}
{{- end }}

{{- define "cryptnono.metricsEnabled" -}}
{{- if or .Values.metrics.enabled .Values.detectors.execwhacker.metrics.enabled }}true{{ end }}
{{- end }}

{{/* Where the pod's containers meet: an emptyDir shared by all of them. */}}
{{- define "cryptnono.socketDir" -}}/run/cryptnono{{- end }}
{{- define "cryptnono.collectorEndpoint" -}}ipc://{{ include "cryptnono.socketDir" . }}/collector.sock{{- end }}
{{- define "cryptnono.execwhackerEndpoint" -}}ipc://{{ include "cryptnono.socketDir" . }}/execwhacker.sock{{- end }}
{{- define "cryptnono.execwhackerConfigDir" -}}/etc/cryptnono/execwhacker{{- end }}
{{- define "cryptnono.execwhackerSecretDir" -}}/etc/cryptnono/execwhacker-secrets{{- end }}

{{/* The unprivileged uid/gid of the exporter, also the pod's fsGroup: the socket
     directory and the sockets in it belong to this group. */}}
{{- define "cryptnono.nonRootId" -}}65532{{- end }}

{{/* Settings every container shares: nothing gained through exec, nothing written to
     the image, no capability but the ones added per container, RuntimeDefault seccomp. */}}
{{- define "cryptnono.baseSecurityContext" -}}
privileged: false
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "cryptnono.nodeEnv" -}}
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
{{- end }}
