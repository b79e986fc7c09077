{{/* The chart's name, or nameOverride. */}}
{{- define "symbol-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* release-chart, or fullnameOverride; 63 characters at most (a DNS label). */}}
{{- define "symbol-operator.fullname" -}}
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

{{/* name-version for the helm.sh/chart label. */}}
{{- define "symbol-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels of one component (pass a dict: root, component); never change between versions. */}}
{{- define "symbol-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "symbol-operator.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The standard labels of one component (pass a dict: root, component). */}}
{{- define "symbol-operator.labels" -}}
helm.sh/chart: {{ include "symbol-operator.chart" .root }}
{{ include "symbol-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: symbol-operator
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "symbol-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "symbol-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag or repository@digest. */}}
{{- define "symbol-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "symbol-operator.webhookName" -}}
{{- printf "%s-webhook" (include "symbol-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* cert-manager issues the webhook's certificate: asked for, or auto and its API is installed. */}}
{{- define "symbol-operator.certManager" -}}
{{- if or (eq .Values.webhook.tls.source "certManager") (and (eq .Values.webhook.tls.source "auto") (.Capabilities.APIVersions.Has "cert-manager.io/v1")) }}true{{- end }}
{{- end }}

{{/* Restricted Pod Security: the pod part. */}}
{{- define "symbol-operator.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.runAsUser }}
runAsGroup: {{ .Values.runAsUser }}
fsGroup: {{ .Values.runAsUser }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Restricted Pod Security: the container part. */}}
{{- define "symbol-operator.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* priorityClassName, nodeSelector, tolerations, affinity, imagePullSecrets of every pod. */}}
{{- define "symbol-operator.podPlacement" -}}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "symbol-operator.publishingName" -}}
{{- printf "%s-publishing" (include "symbol-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The service's configuration file (docs/publishing.md); the operator reads the same file. */}}
{{- define "symbol-operator.publishingConfig" -}}
{{- $p := .Values.publishing }}
{{- $config := dict "listen" (dict "host" "0.0.0.0" "port" $p.port) "store" $p.store "tokens_file" "/etc/symbol-service/tokens/tokens.yaml" }}
{{- with $p.publicUrl }}{{ $_ := set $config "public_url" . }}{{ end }}
{{- with $p.limits }}{{ $_ := set $config "limits" . }}{{ end }}
{{- $_ := set $config "gc" (dict "grace_period" $p.gc.gracePeriod) }}
{{- toYaml $config }}
{{- end }}

{{/* The store's keys as AWS_* variables from the existing Secret (nothing when none is named). */}}
{{- define "symbol-operator.publishingCredentials" -}}
{{- with .Values.publishing.credentialsSecret }}
{{- if .name }}
- name: AWS_ACCESS_KEY_ID
  valueFrom: {secretKeyRef: {name: {{ .name }}, key: {{ .accessKeyIdKey }}}}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom: {secretKeyRef: {name: {{ .name }}, key: {{ .secretAccessKeyKey }}}}
{{- end }}
{{- end }}
{{- end }}

{{/* Binds a ClusterRole (dict: root, role) to the operator: in each watched namespace, or cluster-wide. */}}
{{- define "symbol-operator.operatorBindings" -}}
{{- $root := .root }}
{{- $role := .role }}
{{- if $root.Values.operator.watchNamespaces }}
{{- range $root.Values.operator.watchNamespaces }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ $role }}
  namespace: {{ . }}
  labels:
    {{- include "symbol-operator.labels" (dict "root" $root "component" "operator") | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {{ $role }}
subjects:
  - kind: ServiceAccount
    name: {{ include "symbol-operator.serviceAccountName" $root }}
    namespace: {{ $root.Release.Namespace }}
{{- end }}
{{- else }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {{ $role }}
  labels:
    {{- include "symbol-operator.labels" (dict "root" $root "component" "operator") | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {{ $role }}
subjects:
  - kind: ServiceAccount
    name: {{ include "symbol-operator.serviceAccountName" $root }}
    namespace: {{ $root.Release.Namespace }}
{{- end }}
{{- end }}
