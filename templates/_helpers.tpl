{{- /*
Helpers of the registry-operator module. They follow the conventions of Deckhouse modules
(labels, image references, security contexts, placement) without depending on any library chart.
*/ -}}

{{- /* Namespace of the module: d8-<module name>. */ -}}
{{- define "registry_operator.namespace" -}}
d8-{{ .Chart.Name }}
{{- end -}}

{{- /* Usage: {{ include "registry_operator.labels" (list . (dict "app" "registry-operator")) }}
Deckhouse's labels (heritage, module) plus any extra ones, as a `labels:` block. */ -}}
{{- define "registry_operator.labels" -}}
{{- $ctx := index . 0 -}}
{{- $labels := dict "heritage" "deckhouse" "module" $ctx.Chart.Name -}}
{{- if gt (len .) 1 }}{{- $labels = merge (dict) $labels (index . 1) -}}{{- end -}}
labels:
  {{- range $k, $v := $labels }}
  {{ $k }}: {{ $v | quote }}
  {{- end }}
{{- end -}}

{{- /* Usage: {{ include "registry_operator.image" (list . "registryOperator") }}
The reference of one of the module's own images: <repository>@<digest>. The digest comes from the
bundle's images_digests.json (.Values.global.modulesImages.digests.<module>.<image>); the repository
is the module's source registry when Deckhouse sets it, else the cluster's modules registry. */ -}}
{{- define "registry_operator.image" -}}
{{- $ctx := index . 0 -}}
{{- $image := index . 1 -}}
{{- $module := $ctx.Chart.Name | camelcase | untitle -}}
{{- $digests := index ($ctx.Values.global.modulesImages.digests | default dict) $module | default dict -}}
{{- $digest := index $digests $image | default "" -}}
{{- if not $digest -}}
{{- fail (printf "image %s.%s has no digest in .Values.global.modulesImages.digests" $module $image) -}}
{{- end -}}
{{- $settings := $ctx.Values.registryOperator | default dict -}}
{{- $base := $ctx.Values.global.modulesImages.registry.base -}}
{{- with $settings.registry }}{{ with .base }}{{ $base = . }}{{ end }}{{ end -}}
{{- printf "%s@%s" (trimSuffix "/" $base) $digest -}}
{{- end -}}

{{- /* Usage: {{ include "registry_operator.common_image" (list . "kubeRbacProxy") }}
An image Deckhouse ships for every module (its `common` images). */ -}}
{{- define "registry_operator.common_image" -}}
{{- $ctx := index . 0 -}}
{{- $image := index . 1 -}}
{{- $digest := index ($ctx.Values.global.modulesImages.digests.common | default dict) $image | default "" -}}
{{- if not $digest -}}
{{- fail (printf "image common.%s has no digest in .Values.global.modulesImages.digests" $image) -}}
{{- end -}}
{{- printf "%s@%s" (trimSuffix "/" $ctx.Values.global.modulesImages.registry.base) $digest -}}
{{- end -}}

{{- /* Number of operator Pods: the `replicas` setting, else 2 in a highly available cluster, else 1. */ -}}
{{- define "registry_operator.replicas" -}}
{{- $settings := .Values.registryOperator | default dict -}}
{{- if $settings.replicas -}}
{{- $settings.replicas | int -}}
{{- else if .Values.global.highAvailability -}}
2
{{- else -}}
1
{{- end -}}
{{- end -}}

{{- /* Whether the VerticalPodAutoscaler API is there to manage the Pods' requests. */ -}}
{{- define "registry_operator.vpa_enabled" -}}
{{- $modules := .Values.global.enabledModules | default list -}}
{{- if or (has "vertical-pod-autoscaler" $modules) (has "vertical-pod-autoscaler-crd" $modules) (.Capabilities.APIVersions.Has "autoscaling.k8s.io/v1/VerticalPodAutoscaler") -}}
true
{{- end -}}
{{- end -}}

{{- /* Pod security context: the unprivileged `deckhouse` user (64535), RuntimeDefault seccomp. */ -}}
{{- define "registry_operator.pod_security_context" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 64535
  runAsGroup: 64535
  fsGroup: 64535
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{- /* Container security context meeting the Pod Security Standards' restricted profile. */ -}}
{{- define "registry_operator.container_security_context" -}}
securityContext:
  readOnlyRootFilesystem: true
  allowPrivilegeEscalation: false
  privileged: false
  runAsNonRoot: true
  capabilities:
    drop:
      - ALL
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{- /* nodeSelector: the setting, else Deckhouse's system nodes when the cluster has them. */ -}}
{{- define "registry_operator.node_selector" -}}
{{- $settings := .Values.registryOperator | default dict -}}
{{- if $settings.nodeSelector }}
nodeSelector:
  {{- toYaml $settings.nodeSelector | nindent 2 }}
{{- else }}
{{- if gt (dig "discovery" "d8SpecificNodeCountByRole" "system" 0 .Values.global | int) 0 }}
nodeSelector:
  node-role.deckhouse.io/system: ""
{{- end }}
{{- end }}
{{- end -}}

{{- /* tolerations: the setting, else the taints Deckhouse puts on system nodes. */ -}}
{{- define "registry_operator.tolerations" -}}
{{- $settings := .Values.registryOperator | default dict -}}
tolerations:
{{- if $settings.tolerations }}
  {{- toYaml $settings.tolerations | nindent 2 }}
{{- else }}
  - key: dedicated.deckhouse.io
    operator: Equal
    value: system
  - key: dedicated.deckhouse.io
    operator: Equal
    value: deckhouse
  - key: node.deckhouse.io/uninitialized
    operator: Exists
    effect: NoSchedule
{{- end }}
{{- end -}}
