{{- /*
What is this module's own: everything else (image references, labels, security contexts,
placement, priority class, monitoring) comes from deckhouse_lib_helm in charts/.
*/ -}}

{{- /* Number of operator Pods: the `replicas` setting, else 2 in a highly available cluster, else 1. */ -}}
{{- define "registry_operator.replicas" -}}
{{- $settings := .Values.registryOperator | default dict -}}
{{- if $settings.replicas -}}
{{- $settings.replicas | int -}}
{{- else -}}
{{- include "helm_lib_is_ha_to_value" (list . 2 1) -}}
{{- end -}}
{{- end -}}

{{- /* Whether the VerticalPodAutoscaler API is there to manage the Pods' requests. */ -}}
{{- define "registry_operator.vpa_enabled" -}}
{{- if or (has "vertical-pod-autoscaler" (.Values.global.enabledModules | default list)) (include "helm_lib_api_version_exists" (list . "autoscaling.k8s.io/v1/VerticalPodAutoscaler")) -}}
true
{{- end -}}
{{- end -}}
