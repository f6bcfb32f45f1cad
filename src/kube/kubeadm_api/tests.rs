use super::*;

const INIT: &str = r#"
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
bootstrapTokens:
- token: abcdef.0123456789abcdef
  description: join
  ttl: 24h0m0s
  usages: [signing, authentication]
  groups: [system:bootstrappers:kubeadm:default-node-token]
nodeRegistration:
  name: master1
  criSocket: unix:///run/containerd/containerd.sock
  taints: []
  kubeletExtraArgs:
  - name: node-ip
    value: 10.0.0.11
  ignorePreflightErrors: [Swap]
  imagePullPolicy: IfNotPresent
  imagePullSerial: true
localAPIEndpoint:
  advertiseAddress: 10.0.0.11
  bindPort: 6443
certificateKey: 0000000000000000000000000000000000000000000000000000000000000000
skipPhases: [addon/kube-proxy]
patches:
  directory: /etc/kubernetes/patches
timeouts:
  controlPlaneComponentHealthCheck: 4m0s
  kubeletHealthCheck: 4m
  kubernetesAPICall: 1m
  etcdAPICall: 2m
  tlsBootstrap: 5m
  discovery: 5m
  upgradeManifests: 5m
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
etcd:
  local:
    imageRepository: 10.0.0.200:5000
    imageTag: 3.6.6-0
    dataDir: /var/lib/etcd
    extraArgs: [{name: quota-backend-bytes, value: "8589934592"}]
    extraEnvs: [{name: GOMAXPROCS, value: "2"}]
    serverCertSANs: [etcd.local]
    peerCertSANs: [10.0.0.11]
networking: {serviceSubnet: 10.96.0.0/12, podSubnet: 10.244.0.0/16, dnsDomain: cluster.local}
kubernetesVersion: v1.35.2
controlPlaneEndpoint: 10.0.0.100:16443
apiServer:
  extraArgs: [{name: audit-log-maxage, value: "30"}, {name: audit-log-maxage, value: "31"}]
  extraVolumes:
  - {name: audit, hostPath: /var/log/audit, mountPath: /var/log/audit, readOnly: false, pathType: DirectoryOrCreate}
  certSANs: [10.0.0.100, master1]
controllerManager: {extraArgs: [{name: bind-address, value: 0.0.0.0}]}
scheduler: {}
dns: {imageRepository: 10.0.0.200:5000, imageTag: v1.13.1, disabled: false}
proxy: {disabled: false}
certificatesDir: /etc/kubernetes/pki
imageRepository: 10.0.0.200:5000
featureGates: {ControlPlaneKubeletLocalMode: true}
clusterName: site
encryptionAlgorithm: RSA-2048
certificateValidityPeriod: 8760h0m0s
caCertificateValidityPeriod: 87600h0m0s
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: systemd
---
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
"#;

#[test]
fn parses_every_known_kind() {
    let docs = parse_documents(INIT).unwrap();
    let kinds: Vec<_> = docs.iter().map(|d| d.kind().to_string()).collect();
    assert_eq!(kinds, ["InitConfiguration", "ClusterConfiguration", "KubeletConfiguration", "KubeProxyConfiguration"]);
    let Document::Init(init) = &docs[0] else { panic!() };
    assert_eq!(init.node_registration.as_ref().unwrap().taints, Some(vec![]));
    assert_eq!(init.timeouts.as_ref().unwrap().kubelet_health_check.unwrap().to_string(), "4m0s");
    let Document::Cluster(c) = &docs[1] else { panic!() };
    assert_eq!(c.api_server.as_ref().unwrap().extra_args.as_ref().unwrap().len(), 2, "duplicates allowed");
    let join = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\ndiscovery:\n  bootstrapToken:\n    \
                token: abcdef.0123456789abcdef\n    apiServerEndpoint: 10.0.0.100:16443\n    caCertHashes: [sha256:00]\n\
                controlPlane:\n  localAPIEndpoint: {advertiseAddress: 10.0.0.12, bindPort: 6443}\n  certificateKey: k\n\
                ---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ResetConfiguration\nforce: true\ncleanupTmpDir: true\n\
                unmountFlags: [MNT_DETACH]\n";
    let docs = parse_documents(join).unwrap();
    assert!(matches!(docs[0], Document::Join(_)));
    assert!(matches!(docs[1], Document::Reset(_)));
    let upgrade = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: UpgradeConfiguration\napply:\n  kubernetesVersion: v1.36.3\n  \
                   allowRCUpgrades: false\n  skipPhases: [addon/kube-proxy]\n  imagePullPolicy: Never\n  imagePullSerial: false\n\
                   diff: {contextLines: 3}\nnode: {etcdUpgrade: false}\nplan: {etcdUpgrade: true}\ntimeouts: {upgradeManifests: 10m}\n";
    let docs = parse_documents(upgrade).unwrap();
    let Document::Upgrade(u) = &docs[0] else { panic!() };
    assert_eq!(u.diff.as_ref().unwrap().context_lines, Some(3));
    assert!(parse_documents_for(upgrade, &"v1.32.0".parse().unwrap()).unwrap_err().to_string().contains("plan.etcdUpgrade"));
    assert!(parse_documents_for(upgrade, &"v1.33.0".parse().unwrap()).is_ok());
}

#[test]
fn round_trips_through_yaml() {
    let docs = parse_documents(INIT).unwrap();
    let again = parse_documents(&to_yaml(&docs).unwrap()).unwrap();
    assert_eq!(docs, again);
}

#[test]
fn unknown_field_names_the_document_and_path() {
    let y = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\n---\napiVersion: kubeadm.k8s.io/v1beta4\n\
             kind: ClusterConfiguration\napiServer:\n  extraArgs:\n  - name: a\n    valu: b\n";
    let e = parse_documents(y).unwrap_err().to_string();
    assert!(e.contains("document 2 (ClusterConfiguration)"), "{e}");
    assert!(e.contains("apiServer.extraArgs[0]"), "{e}");
    assert!(e.contains("unknown field `valu`"), "{e}");
}

#[test]
fn v1beta3_shapes_are_refused() {
    // v1beta3's extraArgs was a map; v1beta4 wants a list of {name, value}.
    let y = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\napiServer:\n  extraArgs:\n    a: b\n";
    let e = parse_documents(y).unwrap_err().to_string();
    assert!(e.contains("apiServer.extraArgs"), "{e}");
    // timeoutForControlPlane moved to InitConfiguration.timeouts in v1beta4
    let y = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\napiServer:\n  timeoutForControlPlane: 4m\n";
    assert!(parse_documents(y).unwrap_err().to_string().contains("timeoutForControlPlane"));
    let y = "apiVersion: kubeadm.k8s.io/v1beta3\nkind: InitConfiguration\n";
    let e = parse_documents(y).unwrap_err().to_string();
    assert!(e.contains("unknown apiVersion/kind kubeadm.k8s.io/v1beta3/InitConfiguration"), "{e}");
    assert!(e.contains("kubeadm.k8s.io/v1beta4/InitConfiguration"), "{e}");
}

#[test]
fn unknown_kinds_and_missing_type_meta() {
    let e = parse_documents("apiVersion: kubeadm.k8s.io/v1beta4\nkind: Upgrade\n").unwrap_err();
    assert!(matches!(e, Error::UnknownKind { index: 1, .. }), "{e}");
    let e = parse_documents("---\nkind: InitConfiguration\n").unwrap_err();
    assert!(e.to_string().contains("document 1 has no apiVersion"), "{e}");
    let e = parse_documents("apiVersion: v1\nkind: Pod\n").unwrap_err();
    assert!(e.to_string().contains("v1/Pod"), "{e}");
    let e = parse_documents("apiVersion: [x\n").unwrap_err();
    assert!(matches!(e, Error::Yaml { index: 1, .. }), "{e}");
}

#[test]
fn empty_documents_are_skipped() {
    let y = "---\n---\napiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n---\n";
    assert_eq!(parse_documents(y).unwrap().len(), 1);
    assert!(parse_documents("").unwrap().is_empty());
}

#[test]
fn wrong_types_are_refused() {
    for (y, path) in [
        ("apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nlocalAPIEndpoint: {bindPort: six}\n", "localAPIEndpoint.bindPort"),
        ("apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\ntimeouts: {discovery: 5 minutes}\n", "timeouts.discovery"),
        ("apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nnodeRegistration: {imagePullPolicy: Sometimes}\n", "nodeRegistration.imagePullPolicy"),
        ("apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nencryptionAlgorithm: RSA-1024\n", "encryptionAlgorithm"),
        ("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nmaxPods: many\n", "maxPods"),
    ] {
        let e = parse_documents(y).unwrap_err().to_string();
        assert!(e.contains(&format!("`{path}`")), "{y}: {e}");
    }
}

#[test]
fn api_version_by_release() {
    for v in ["v1.31.0", "v1.35.2", "v1.36.3"] {
        assert_eq!(api_version_for(&v.parse().unwrap()).unwrap(), "kubeadm.k8s.io/v1beta4", "{v}");
    }
    for v in ["v1.30.14", "v1.37.0", "v2.0.0", "v0.36.0"] {
        let e = api_version_for(&v.parse().unwrap()).unwrap_err().to_string();
        assert!(e.contains(v) && e.contains("v1.31.0 up to v1.36.x"), "{e}");
    }
}

#[test]
fn version_gated_fields() {
    let kubelet = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ntlsCurvePreferences: [23]\n";
    assert!(parse_documents_for(kubelet, &"v1.36.0".parse().unwrap()).is_ok());
    let e = parse_documents_for(kubelet, &"v1.35.7".parse().unwrap()).unwrap_err().to_string();
    assert!(e.contains("`tlsCurvePreferences` exists only from Kubernetes v1.36.0 on, not in v1.35.7"), "{e}");
    let http = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\netcd:\n  external:\n    \
                endpoints: [https://e:2379]\n    httpEndpoints: [http://e:2381]\n    caFile: a\n    certFile: b\n    keyFile: c\n";
    assert!(parse_documents_for(http, &"v1.35.0".parse().unwrap()).is_ok());
    assert!(parse_documents_for(http, &"v1.34.3".parse().unwrap()).is_err());
    let p384 = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nencryptionAlgorithm: ECDSA-P384\n";
    assert!(parse_documents_for(p384, &"v1.33.1".parse().unwrap()).is_err());
    assert!(parse_documents_for(p384, &"v1.34.0".parse().unwrap()).is_ok());
    assert!(parse_documents_for(p384, &"v1.30.0".parse().unwrap()).unwrap_err().to_string().contains("v1.30.0"));
}

#[test]
fn redaction_hides_every_secret_and_only_those() {
    let join = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\ndiscovery:\n  bootstrapToken:\n    \
                token: abcdef.0123456789abcdef\n    caCertHashes: [sha256:1234]\n  tlsBootstrapToken: abcdef.0123456789abcdef\n\
                controlPlane:\n  certificateKey: 00ff\n";
    let mut docs = parse_documents(INIT).unwrap();
    docs.extend(parse_documents(join).unwrap());
    docs.iter_mut().for_each(Document::redact_secrets);
    let y = to_yaml(&docs).unwrap();
    assert!(!y.contains("0123456789abcdef"), "{y}");
    assert!(!y.contains("00ff") && !y.contains("0000000000000000"), "{y}");
    assert_eq!(y.matches(REDACTED).count(), 5, "{y}");
    assert!(y.contains("sha256:1234"));
    // still a structurally valid configuration
    assert_eq!(parse_documents(&y).unwrap().len(), 5);
}
