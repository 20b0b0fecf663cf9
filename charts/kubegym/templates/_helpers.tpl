{{/*
Names and labels shared by every template.
*/}}

{{- define "kubegym.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-kubegym, or the release name when it already contains the chart name. */}}
{{- define "kubegym.fullname" -}}
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

{{- define "kubegym.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubegym.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "kubegym.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "kubegym.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: kubegym
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "kubegym.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kubegym.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* repository@digest, else repository:tag (tag defaults to the chart's appVersion). Call with (dict "image" ... "root" $). */}}
{{- define "kubegym.image" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{/* operator.affinity, plus (with more than one replica, unless it sets podAntiAffinity) a
preferred anti-affinity that spreads the operator pods across nodes. */}}
{{- define "kubegym.affinity" -}}
{{- $op := .Values.operator -}}
{{- $affinity := deepCopy (default (dict) $op.affinity) -}}
{{- if and (gt (int $op.replicas) 1) (not (hasKey $affinity "podAntiAffinity")) -}}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "kubegym.selectorLabels" . | fromYaml)) -}}
{{- $_ := set $affinity "podAntiAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" 100 "podAffinityTerm" $term))) -}}
{{- end -}}
{{- if $affinity -}}
{{- toYaml $affinity -}}
{{- end -}}
{{- end -}}

{{/* Cross-field rules the schema cannot say clearly. */}}
{{- define "kubegym.validate" -}}
{{- $le := .Values.operator.leaderElection -}}
{{- if and (gt (int .Values.operator.replicas) 1) (not $le.enabled) -}}
{{- fail "operator.leaderElection.enabled is required with more than one operator replica: without it every replica would reconcile every run" -}}
{{- end -}}
{{- if not (and (gt (float64 $le.leaseDurationSeconds) (float64 $le.renewDeadlineSeconds)) (gt (float64 $le.renewDeadlineSeconds) (float64 $le.retryPeriodSeconds))) -}}
{{- fail "operator.leaderElection needs leaseDurationSeconds > renewDeadlineSeconds > retryPeriodSeconds" -}}
{{- end -}}
{{- $s := .Values.storage -}}
{{- if and (not $s.bucket) (or $s.prefix $s.endpoint $s.region $s.secretName) -}}
{{- fail "storage.bucket is required when storage.prefix, storage.endpoint, storage.region or storage.secretName is set" -}}
{{- end -}}
{{- if and $s.bucket (eq $s.credentials "static") (not $s.secretName) -}}
{{- fail "storage.secretName is required with storage.credentials=static: runner pods take the S3 credentials from that Secret in their namespace" -}}
{{- end -}}
{{- if and $s.bucket (eq $s.credentials "sts") $s.secretName -}}
{{- fail "storage.secretName is for storage.credentials=static; with sts the operator mints each run's credentials from storage.sts.operatorSecretName" -}}
{{- end -}}
{{- if and $s.bucket (eq $s.credentials "sts") (not $s.sts.operatorSecretName) -}}
{{- fail "storage.sts.operatorSecretName is required with storage.credentials=sts: the operator's own key, which it turns into each run's credentials" -}}
{{- end -}}
{{- if and $s.bucket (eq $s.credentials "sts") (not $s.endpoint) (not $s.sts.endpoint) (not $s.sts.roleArn) -}}
{{- fail "storage.sts.roleArn is required for STS on AWS (no storage.endpoint): the role the session policies narrow" -}}
{{- end -}}
{{- end -}}
