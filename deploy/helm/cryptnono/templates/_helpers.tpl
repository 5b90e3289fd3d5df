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

{{/* Values the schema can't check: ports that would collide in the pod's one network
     namespace. */}}
{{- define "cryptnono.checkValues" -}}
{{- $ra := .Values.remoteAccess }}
{{- if $ra.enabled }}
{{- $seen := dict (toString (int .Values.detectors.execwhacker.metrics.port)) "the metrics port (detectors.execwhacker.metrics.port)" }}
{{- range (include "cryptnono.remoteStages" . | fromJsonArray) }}
{{- $key := toString .port }}
{{- if hasKey $seen $key }}
{{- fail (printf "remoteAccess.%s=%s is also %s: every port of the pod must differ (its containers share one network namespace)" .value $key (get $seen $key)) }}
{{- end }}
{{- $_ := set $seen $key (printf "remoteAccess.%s" .value) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The enabled enforcers, in container order, as a JSON list: container name, the
     enforcer's --detector, and the remote port value (remoteAccess.<value>). */}}
{{- define "cryptnono.enforcers" -}}
{{- $d := .Values.detectors }}
{{- $list := list }}
{{- if $d.execwhacker.enabled }}
{{- $list = append $list (dict "name" "execwhacker" "detector" "execwhacker" "portValue" "execwhackerPort") }}
{{- end }}
{{- if $d.monero.enabled }}
{{- $list = append $list (dict "name" "monero" "detector" "monero" "portValue" "moneroPort") }}
{{- end }}
{{- if $d.tcpflowkiller.enabled }}
{{- $list = append $list (dict "name" "tcpflowkiller" "detector" "flowkiller" "portValue" "tcpflowkillerPort") }}
{{- end }}
{{- toJson $list }}
{{- end }}

{{/* The stages with a tcp:// endpoint when remoteAccess is enabled: the collector and
     every enabled enforcer whose port is not 0. JSON list of {name, value, port}. */}}
{{- define "cryptnono.remoteStages" -}}
{{- $ra := .Values.remoteAccess }}
{{- $list := list }}
{{- if $ra.enabled }}
{{- if gt (int $ra.collectorPort) 0 }}
{{- $list = append $list (dict "name" "collector" "value" "collectorPort" "port" (int $ra.collectorPort)) }}
{{- end }}
{{- range (include "cryptnono.enforcers" . | fromJsonArray) }}
{{- $port := int (get $ra .portValue) }}
{{- if gt $port 0 }}
{{- $list = append $list (dict "name" .name "value" .portValue "port" $port) }}
{{- end }}
{{- end }}
{{- end }}
{{- toJson $list }}
{{- end }}

{{/* Whether the pods are deployed at all: without an enabled detector there is
     nothing to enforce. */}}
{{- define "cryptnono.enabled" -}}
{{- if (include "cryptnono.enforcers" . | fromJsonArray) }}true{{ end }}
{{- end }}

{{- define "cryptnono.metricsEnabled" -}}
{{- if or .Values.metrics.enabled .Values.detectors.execwhacker.metrics.enabled }}true{{ end }}
{{- end }}

{{/* The collector's probes: exec always (every detector's process context comes from
     it), fpu for monero, connect for the flowkiller. */}}
{{- define "cryptnono.probes" -}}
{{- $probes := list "exec" }}
{{- if .Values.detectors.monero.enabled }}{{ $probes = append $probes "fpu" }}{{ end }}
{{- if .Values.detectors.tcpflowkiller.enabled }}{{ $probes = append $probes "connect" }}{{ end }}
{{- join "," $probes }}
{{- end }}

{{/* cryptnono's FlowKiller traitlets, with this chart's defaults (cryptnono's). */}}
{{- define "cryptnono.flowkillerConfig" -}}
{{- $fk := dict }}
{{- with .Values.detectors.tcpflowkiller.config }}{{ with .FlowKiller }}{{ $fk = . }}{{ end }}{{ end }}
{{- toJson (dict
      "threshold" (default 15 $fk.unique_destinations_threshold)
      "lookback" (default 30 $fk.lookback_duration_seconds)
      "debug" (not (empty (or .Values.detectors.tcpflowkiller.debug $fk.debug)))
      "logConnects" (not (empty (and .Values.detectors.tcpflowkiller.enabled $fk.log_connects)))) }}
{{- end }}

{{/* Container-runtime enrichment: the sockets' paths on the node ("" = off). */}}
{{- define "cryptnono.criHostSocket" -}}
{{- if .Values.enrichment.cri.enabled }}
{{- coalesce .Values.enrichment.cri.socket .Values.detectors.tcpflowkiller.containerdHostPath "/run/containerd/containerd.sock" }}
{{- end }}
{{- end }}
{{- define "cryptnono.dockerHostSocket" -}}
{{- if .Values.enrichment.docker.enabled }}{{ .Values.enrichment.docker.socket }}{{ end }}
{{- end }}
{{/* Where the exporter sees them: fixed paths, whatever the node's layout. */}}
{{- define "cryptnono.criSocket" -}}/run/cryptnono-runtime/cri.sock{{- end }}
{{- define "cryptnono.dockerSocket" -}}/run/cryptnono-runtime/docker.sock{{- end }}

{{/* CurveZMQ keys of the remote endpoints (remoteAccess). */}}
{{- define "cryptnono.curveKeysDir" -}}/etc/cryptnono/curve/server{{- end }}
{{- define "cryptnono.curveAuthorizedDir" -}}/etc/cryptnono/curve/authorized{{- end }}

{{/* Where the pod's containers meet: an emptyDir shared by all of them. */}}
{{- define "cryptnono.socketDir" -}}/run/cryptnono{{- end }}
{{- define "cryptnono.collectorEndpoint" -}}ipc://{{ include "cryptnono.socketDir" . }}/collector.sock{{- end }}
{{- define "cryptnono.execwhackerEndpoint" -}}ipc://{{ include "cryptnono.socketDir" . }}/execwhacker.sock{{- end }}
{{/* An enforcer's socket, named after its --detector (the enforcer's own default). */}}
{{- define "cryptnono.enforcerEndpoint" -}}ipc://{{ include "cryptnono.socketDir" . }}/{{ . }}.sock{{- end }}
{{- define "cryptnono.flowkillerListDir" -}}/etc/cryptnono/flowkiller{{- end }}
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

{{/* The securityContext of every enforcer: CAP_KILL to kill other users' processes;
     uid 0 because Kubernetes gives added capabilities to uid 0 only (no ambient
     capabilities). */}}
{{- define "cryptnono.enforcerSecurityContext" -}}
{{ include "cryptnono.baseSecurityContext" . }}
runAsUser: 0
runAsGroup: 0
runAsNonRoot: false
capabilities:
  drop: [ALL]
  add: [KILL{{ if include "cryptnono.realtime" . }}, SYS_NICE{{ end }}]
{{- end }}

{{/* "true" when scheduling.rtPriority asks for SCHED_FIFO (the collector and the
     enforcers then need CAP_SYS_NICE until they have applied it), else "". */}}
{{- define "cryptnono.realtime" -}}
{{- if gt (int .Values.scheduling.rtPriority) 0 }}true{{ end }}
{{- end }}

{{/* --rt-priority / --cpus for the collector and the enforcers; nothing when off. */}}
{{- define "cryptnono.schedulingArgs" -}}
{{- if include "cryptnono.realtime" . }}
- --rt-priority
- {{ .Values.scheduling.rtPriority | int | quote }}
{{- end }}
{{- $cpus := toString .Values.scheduling.cpus }}
{{- if ne $cpus "" }}
- --cpus
- {{ $cpus | quote }}
{{- end }}
{{- end }}

{{/* Readiness and liveness of a stage without a port: alive (and attached, and not
     stuck) = publishing its periodic stats on its socket. Context: the endpoint. */}}
{{- define "cryptnono.tailProbes" -}}
readinessProbe:
  exec:
    command: ["/usr/bin/cryptnono", "tail", {{ . | quote }}, "--topic", "stats", "--count", "1", "--timeout", "15"]
  initialDelaySeconds: 2
  periodSeconds: 30
  timeoutSeconds: 20
livenessProbe:
  exec:
    command: ["/usr/bin/cryptnono", "tail", {{ . | quote }}, "--topic", "stats", "--count", "1", "--timeout", "15"]
  initialDelaySeconds: 30
  periodSeconds: 60
  timeoutSeconds: 20
  failureThreshold: 3
{{- end }}

{{/* A stage's tcp:// endpoint for remote subscribers (remoteAccess): its args. Context:
     dict root, port. A tcp:// bind needs the key pair and the authorized clients. */}}
{{- define "cryptnono.remoteArgs" -}}
- --also-bind
- {{ printf "tcp://0.0.0.0:%d" (int .port) | quote }}
- --curve-keys
- {{ printf "%s/server.key" (include "cryptnono.curveKeysDir" .root) | quote }}
- --curve-authorized
- {{ include "cryptnono.curveAuthorizedDir" .root | quote }}
{{- end }}

{{/* ... its port (context: dict name, port) ... */}}
{{- define "cryptnono.remotePort" -}}
- name: {{ printf "zmq-%s" (.name | replace "tcpflowkiller" "flowkiller") }}
  containerPort: {{ int .port }}
  protocol: TCP
{{- end }}

{{/* ... and its key mounts (the two Secrets, as directories). */}}
{{- define "cryptnono.remoteMounts" -}}
- name: curve-keys
  mountPath: {{ include "cryptnono.curveKeysDir" . }}
  readOnly: true
- name: curve-authorized
  mountPath: {{ include "cryptnono.curveAuthorizedDir" . }}
  readOnly: true
{{- end }}
