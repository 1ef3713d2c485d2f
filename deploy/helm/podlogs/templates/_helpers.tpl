{{/* Names. */}}
{{- define "podlogs.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "podlogs.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "podlogs.forwarder" -}}{{ include "podlogs.fullname" . | trunc 53 | trimSuffix "-" }}-forwarder{{- end -}}
{{- define "podlogs.aggregator" -}}{{ include "podlogs.fullname" . | trunc 52 | trimSuffix "-" }}-aggregator{{- end -}}
{{- define "podlogs.nats" -}}{{ include "podlogs.fullname" . | trunc 58 | trimSuffix "-" }}-nats{{- end -}}

{{- define "podlogs.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "podlogs.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: include "podlogs.selector" (list . "aggregator"). */}}
{{- define "podlogs.selector" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "podlogs.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* "On", "on", "true", true, 1 are on (aws-for-fluent-bit writes "On"/"Off"). */}}
{{- define "podlogs.on" -}}
{{- if has (lower (toString .)) (list "on" "true" "1" "yes") -}}true{{- end -}}
{{- end -}}

{{- define "podlogs.image" -}}
{{- $img := index . 0 -}}{{- $ := index . 1 -}}
{{- $registry := $.Values.image.registry -}}
{{- $repo := $img.repository -}}
{{- if $registry }}{{ $repo = printf "%s/%s" $registry $repo }}{{ end -}}
{{- printf "%s:%s" $repo (default $.Chart.AppVersion (default $.Values.image.tag $img.tag)) -}}
{{- end -}}

{{/* OpenSearch URL from opensearch.host, .port and .tls. */}}
{{- define "podlogs.opensearchURL" -}}
{{- $os := .Values.opensearch -}}
{{- if not $os.host -}}
{{- fail "opensearch.host is required: the OpenSearch endpoint's host name, e.g. --set opensearch.host=search-logs-abc123.us-west-2.es.amazonaws.com" -}}
{{- end -}}
{{- $host := $os.host | trimPrefix "https://" | trimPrefix "http://" | trimSuffix "/" -}}
{{- printf "%s://%s:%v" (ternary "https" "http" (eq (include "podlogs.on" $os.tls) "true")) $host $os.port -}}
{{- end -}}

{{- define "podlogs.opensearchSecret" -}}
{{- default (printf "%s-opensearch" (include "podlogs.fullname" .)) .Values.opensearch.existingSecret -}}
{{- end -}}

{{- define "podlogs.opensearchAuth" -}}
{{- if or .Values.opensearch.existingSecret .Values.opensearch.httpUser .Values.opensearch.httpPasswd -}}true{{- end -}}
{{- end -}}

{{- define "podlogs.awsAuth" -}}{{ include "podlogs.on" .Values.opensearch.awsAuth }}{{- end -}}

{{/* NATS: "external" when nats.url is set, else nats.mode ("cluster" by default). */}}
{{- define "podlogs.natsMode" -}}
{{- $mode := .Values.nats.mode | default (ternary "external" "cluster" (ne (toString .Values.nats.url) "")) -}}
{{- if not (has $mode (list "cluster" "external" "embedded")) -}}
{{- fail (printf "nats.mode %q: want cluster, external or embedded" $mode) -}}
{{- end -}}
{{- if and (eq $mode "external") (not .Values.nats.url) -}}
{{- fail "nats.mode=external needs nats.url, e.g. nats://nats.nats.svc:4222" -}}
{{- end -}}
{{- if and (ne $mode "external") .Values.nats.url -}}
{{- fail (printf "nats.url is set but nats.mode is %q: leave nats.mode empty or set it to external" $mode) -}}
{{- end -}}
{{- $mode -}}
{{- end -}}

{{- define "podlogs.natsURL" -}}
{{- $mode := include "podlogs.natsMode" . -}}
{{- if eq $mode "external" -}}{{ .Values.nats.url }}
{{- else if eq $mode "cluster" -}}
{{- $svc := printf "%s.%s.svc.%s" (include "podlogs.nats" .) .Release.Namespace .Values.clusterDomain -}}
{{- $urls := list -}}
{{- range $i := until (int .Values.nats.cluster.replicas) -}}
{{- $urls = append $urls (printf "nats://%s-%d.%s:4222" (include "podlogs.nats" $) $i $svc) -}}
{{- end -}}
{{- join "," $urls -}}
{{- end -}}
{{- end -}}

{{- define "podlogs.natsStreamReplicas" -}}
{{- if .Values.nats.streamReplicas -}}{{ .Values.nats.streamReplicas }}
{{- else if eq (include "podlogs.natsMode" .) "cluster" -}}{{ min 3 (int .Values.nats.cluster.replicas) }}
{{- else -}}1{{- end -}}
{{- end -}}

{{- define "podlogs.aggregatorTarget" -}}
{{- printf "dns:///%s.%s.svc.%s:%d" (include "podlogs.aggregator" .) .Release.Namespace .Values.clusterDomain (int .Values.aggregator.grpcPort) -}}
{{- end -}}

{{/* TLS between the tiers: env of one side. include "podlogs.tlsEnv" (list . "aggregator"). */}}
{{- define "podlogs.tlsEnv" -}}
{{- $ := index . 0 -}}
{{- if $.Values.tls.enabled }}
- name: PODLOGS_TLS_CERT
  value: /etc/podlogs/tls/tls.crt
- name: PODLOGS_TLS_KEY
  value: /etc/podlogs/tls/tls.key
- name: PODLOGS_TLS_CA
  value: /etc/podlogs/tls/ca.crt
{{- end }}
{{- end -}}

{{- define "podlogs.tlsSecret" -}}
{{- $ := index . 0 -}}{{- $side := index . 1 -}}
{{- $s := index $.Values.tls $side -}}
{{- default (printf "%s-%s-tls" (include "podlogs.fullname" $) $side) $s.secretName -}}
{{- end -}}

{{- define "podlogs.priorityClassName" -}}
{{- if .Values.forwarder.priorityClass.create -}}
{{- default (include "podlogs.forwarder" .) .Values.forwarder.priorityClass.name -}}
{{- else -}}
{{- .Values.forwarder.priorityClass.name -}}
{{- end -}}
{{- end -}}

{{- define "podlogs.topologySpread" -}}
{{- $ := index . 0 -}}{{- $component := index . 1 -}}{{- $custom := index . 2 -}}
{{- if $custom -}}
{{ toYaml $custom }}
{{- else -}}
{{- range $key := list "topology.kubernetes.io/zone" "kubernetes.io/hostname" }}
- maxSkew: 1
  topologyKey: {{ $key }}
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "podlogs.selector" (list $ $component) | nindent 6 }}
{{- end }}
{{- end -}}
{{- end -}}

{{/* Labels of one component's objects: include "podlogs.componentLabels" (list . "aggregator"). */}}
{{- define "podlogs.componentLabels" -}}
{{- $ := index . 0 -}}
helm.sh/chart: {{ printf "%s-%s" $.Chart.Name $.Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ $.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $.Release.Service }}
app.kubernetes.io/part-of: podlogs
{{ include "podlogs.selector" . }}
{{- end -}}
