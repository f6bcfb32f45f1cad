//! The images `kubeadm init/join` pulls for a Kubernetes release: kube-apiserver, kube-controller-manager,
//! kube-scheduler and kube-proxy at the release's own tag, plus CoreDNS, pause and etcd at tags the kubeadm
//! binary carries in `cmd/kubeadm/app/constants/constants.go` (`CoreDNSVersion`, `PauseVersion`, and
//! `SupportedEtcdVersion[minor]` through `EtcdSupportedVersion()`).
//!
//! Those three tags live in the kubeadm binary and move in patch releases (1.34.1 -> 1.34.2 moved etcd
//! 3.6.4-0 -> 3.6.5-0), so the table is keyed by exact patch ranges and refuses any release it does not
//! list: an unknown patch could pull a tag the bundle does not carry, and the site has no internet.
//!
//! Where each row comes from: `kubeadm config images list --kubernetes-version vX` of the released kubeadm
//! of that exact version, as recorded by kubernetes/minikube `pkg/minikube/constants/constants_kubeadm_images.go`
//! @ eb25dbc703701fa38c3f65c89a1896baa375e5ed (its generator, `hack/update/kubeadm_constants`, downloads
//! `dl.k8s.io/release/vX/bin/linux/ARCH/kubeadm` and runs that command). kubernetes/kubernetes itself
//! could not be read at the release tags here (too large to fetch; the file index holds no tag copy).
//! Cross-checks: the release notes (kubernetes/sig-release @ e8dfc80571dcb23c67a5ec044da17374358130cf:
//! 1.36 "Updated etcd images to v3.6.8" #137107, "Updated CoreDNS to v1.14.2" #137605, "Updated the pause
//! image to v3.10.2" #138199; 1.35 "Updated etcd to v3.6.6" #135271) and kubernetes/kubernetes
//! `constants.go` @ 898b9f800267a757615ecfb71fc377d04d996c6b (master during 1.36 development: CoreDNS
//! v1.14.1, pause 3.10.1, etcd 3.6.7-0 for 34-36, exactly minikube's v1.36.0-alpha.1 row).

use super::{Error, Result, Version};
use std::fmt;

/// kubeadm's default `imageRepository`.
pub const DEFAULT_REPOSITORY: &str = "registry.k8s.io";

/// One row: a run of patch releases of one minor line whose kubeadm pins the same tags.
struct Pins {
    minor: u32,
    patches: (u32, u32),
    coredns: &'static str,
    pause: &'static str,
    etcd: &'static str,
    source: &'static str,
}

const MINIKUBE: &str = "kubeadm config images list of the released kubeadm, recorded in kubernetes/minikube \
                        pkg/minikube/constants/constants_kubeadm_images.go @ eb25dbc7";

/// Patches released after minikube's record (mid-August 2026 on), from recorded runs of the released kubeadm.
const OBSERVED: &str = "kubeadm config images list of the released kubeadm v1.36.5 (kubeadm_1.36.5-1.1 deb), recorded in two \
                        independent public notes (Oct 2026); v1.36.4 lies between v1.36.3 and v1.36.5, which print the same \
                        tags. v1.35.8 / v1.35.9: the etcd and CoreDNS tags kubeadm chose on running clusters of those releases";

const TABLE: &[Pins] = &[
    // v1.35.0 .. v1.35.7: every patch printed the same three tags.
    Pins { minor: 35, patches: (0, 7), coredns: "v1.13.1", pause: "3.10.1", etcd: "3.6.6-0", source: MINIKUBE },
    Pins { minor: 35, patches: (8, 9), coredns: "v1.13.1", pause: "3.10.1", etcd: "3.6.6-0", source: OBSERVED },
    // v1.36.0 .. v1.36.3
    Pins { minor: 36, patches: (0, 3), coredns: "v1.14.2", pause: "3.10.2", etcd: "3.6.8-0", source: MINIKUBE },
    Pins { minor: 36, patches: (4, 5), coredns: "v1.14.2", pause: "3.10.2", etcd: "3.6.8-0", source: OBSERVED },
];

/// What an image is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Component {
    ApiServer,
    ControllerManager,
    Scheduler,
    Proxy,
    CoreDns,
    Pause,
    Etcd,
}

impl Component {
    /// The image name under a repository, as kubeadm forms it.
    pub fn image_name(&self) -> &'static str {
        match self {
            Component::ApiServer => "kube-apiserver",
            Component::ControllerManager => "kube-controller-manager",
            Component::Scheduler => "kube-scheduler",
            Component::Proxy => "kube-proxy",
            Component::CoreDns => "coredns",
            Component::Pause => "pause",
            Component::Etcd => "etcd",
        }
    }
}

/// One image kubeadm needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeadmImage {
    pub component: Component,
    pub tag: String,
}

impl KubeadmImage {
    /// The reference kubeadm uses with `imageRepository: repo`. CoreDNS is the exception kubeadm makes:
    /// under the default registry it is `registry.k8s.io/coredns/coredns`, under any other repository
    /// `<repo>/coredns` (GetDNSImage in cmd/kubeadm/app/images/images.go).
    pub fn reference(&self, repo: &str) -> String {
        let repo = repo.trim_end_matches('/');
        let name = self.component.image_name();
        if self.component == Component::CoreDns && repo == DEFAULT_REPOSITORY {
            format!("{repo}/coredns/{name}:{}", self.tag)
        } else {
            format!("{repo}/{name}:{}", self.tag)
        }
    }

    /// The upstream reference (`imageRepository` unset).
    pub fn upstream(&self) -> String {
        self.reference(DEFAULT_REPOSITORY)
    }

    /// The upstream path under `repo`: `<repo>/coredns/coredns:<tag>` for CoreDNS. The site registry
    /// serves `registry.k8s.io/PATH:TAG` as `PATH:TAG`, so this is the name it answers to; airgap's
    /// ClusterConfiguration makes kubeadm ask for exactly that (see [`ImageSet::at_site`]).
    pub fn site_reference(&self, repo: &str) -> String {
        let up = self.upstream();
        let path = up.strip_prefix(DEFAULT_REPOSITORY).expect("upstream references start with the default repository");
        format!("{}{path}", repo.trim_end_matches('/'))
    }
}

/// The images of one Kubernetes release, in the order `kubeadm config images list` prints them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSet {
    pub version: Version,
    pub images: Vec<KubeadmImage>,
    /// Where the CoreDNS / pause / etcd tags of this release come from.
    pub source: &'static str,
}

impl ImageSet {
    pub fn get(&self, component: Component) -> &KubeadmImage {
        self.images.iter().find(|i| i.component == component).expect("an ImageSet holds every component")
    }

    /// `registry.k8s.io/...` references: what a bundle must carry.
    pub fn upstream(&self) -> Vec<String> {
        self.images.iter().map(KubeadmImage::upstream).collect()
    }

    /// What kubeadm pulls with only `imageRepository: repo` set: CoreDNS becomes `<repo>/coredns:<tag>`,
    /// a name the site registry (which keeps the upstream path `coredns/coredns`) does not serve.
    pub fn under_repository(&self, repo: &str) -> Vec<String> {
        self.images.iter().map(|i| i.reference(repo)).collect()
    }

    /// What kubeadm pulls with airgap's rendered ClusterConfiguration (`imageRepository: repo` and
    /// `dns.imageRepository: <repo>/coredns`): every upstream path under `repo`. This is the list to check
    /// against the site registry before `kubeadm init`.
    pub fn at_site(&self, repo: &str) -> Vec<String> {
        self.images.iter().map(|i| i.site_reference(repo)).collect()
    }

    /// (upstream reference, reference at the site) pairs.
    pub fn mapping(&self, repo: &str) -> Vec<(String, String)> {
        self.images.iter().map(|i| (i.upstream(), i.site_reference(repo))).collect()
    }

    /// What `kubeadm config images list --config F` prints for the ClusterConfiguration `cfg` of this
    /// release: kubeadm's GetControlPlaneImages (cmd/kubeadm/app/images/images.go) with its overrides
    /// (`imageRepository`, `dns.imageRepository` / `imageTag` / `disabled`, `proxy.disabled`,
    /// `etcd.local.imageRepository` / `imageTag`, no etcd image with `etcd.external`).
    pub fn pulled_with(&self, cfg: &super::kubeadm_api::ClusterConfiguration) -> Vec<String> {
        let repo = cfg.image_repository.as_deref().filter(|r| !r.is_empty()).unwrap_or(DEFAULT_REPOSITORY);
        let dns = cfg.dns.as_ref();
        let local = cfg.etcd.as_ref().and_then(|e| e.local.as_ref());
        let external = cfg.etcd.as_ref().is_some_and(|e| e.external.is_some());
        let nonempty = |s: Option<&String>| s.filter(|s| !s.is_empty()).cloned();
        let mut out = Vec::new();
        for i in &self.images {
            match i.component {
                Component::Proxy if cfg.proxy.as_ref().and_then(|p| p.disabled) == Some(true) => {}
                Component::CoreDns if dns.and_then(|d| d.disabled) == Some(true) => {}
                Component::CoreDns => {
                    let r = nonempty(dns.and_then(|d| d.image_repository.as_ref())).unwrap_or(repo.to_string());
                    let tag = nonempty(dns.and_then(|d| d.image_tag.as_ref())).unwrap_or(i.tag.clone());
                    out.push(KubeadmImage { component: i.component, tag }.reference(&r));
                }
                Component::Etcd if external => {}
                Component::Etcd => {
                    let r = nonempty(local.and_then(|l| l.image_repository.as_ref())).unwrap_or(repo.to_string());
                    let tag = nonempty(local.and_then(|l| l.image_tag.as_ref())).unwrap_or(i.tag.clone());
                    out.push(KubeadmImage { component: i.component, tag }.reference(&r));
                }
                _ => out.push(i.reference(repo)),
            }
        }
        out
    }
}

/// The Kubernetes releases [`images_for`] knows, e.g. `v1.35.0-v1.35.7, v1.36.0-v1.36.3`.
pub fn supported_releases() -> String {
    TABLE.iter().map(|p| format!("v1.{m}.{}-v1.{m}.{}", p.patches.0, p.patches.1, m = p.minor)).collect::<Vec<_>>().join(", ")
}

/// The images kubeadm `k8s` pulls. Refuses a release the table does not list.
pub fn images_for(k8s: &Version) -> Result<ImageSet> {
    let pins = TABLE
        .iter()
        .find(|p| k8s.major == 1 && k8s.minor == p.minor && (p.patches.0..=p.patches.1).contains(&k8s.patch))
        .ok_or_else(|| Error::Unsupported {
            version: *k8s,
            what: "airgap's table of kubeadm images",
            supported: format!(
                "{} (kubeadm pins the etcd, CoreDNS and pause tags per patch release: add a row for a new one \
                 from `kubeadm config images list --kubernetes-version {k8s}` run with that kubeadm)",
                supported_releases()
            ),
        })?;
    let own = k8s.to_string();
    let images = [
        (Component::ApiServer, own.as_str()),
        (Component::ControllerManager, own.as_str()),
        (Component::Scheduler, own.as_str()),
        (Component::Proxy, own.as_str()),
        (Component::CoreDns, pins.coredns),
        (Component::Pause, pins.pause),
        (Component::Etcd, pins.etcd),
    ]
    .into_iter()
    .map(|(component, tag)| KubeadmImage { component, tag: tag.to_string() })
    .collect();
    Ok(ImageSet { version: *k8s, images, source: pins.source })
}

impl fmt::Display for ImageSet {
    /// One upstream reference per line, like `kubeadm config images list`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in self.upstream() {
            writeln!(f, "{r}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn v1_36_3_as_kubeadm_lists_it() {
        let set = images_for(&v("v1.36.3")).unwrap();
        assert_eq!(
            set.to_string(),
            "registry.k8s.io/kube-apiserver:v1.36.3\nregistry.k8s.io/kube-controller-manager:v1.36.3\n\
             registry.k8s.io/kube-scheduler:v1.36.3\nregistry.k8s.io/kube-proxy:v1.36.3\n\
             registry.k8s.io/coredns/coredns:v1.14.2\nregistry.k8s.io/pause:3.10.2\nregistry.k8s.io/etcd:3.6.8-0\n"
        );
    }

    #[test]
    fn v1_35_lines() {
        for p in 0..=9 {
            let set = images_for(&Version::new(1, 35, p)).unwrap();
            assert_eq!(set.get(Component::Etcd).tag, "3.6.6-0");
            assert_eq!(set.get(Component::CoreDns).tag, "v1.13.1");
            assert_eq!(set.get(Component::Pause).tag, "3.10.1");
            assert_eq!(set.get(Component::ApiServer).tag, format!("v1.35.{p}"));
        }
    }

    #[test]
    fn under_the_site_registry_coredns_loses_its_extra_path() {
        let set = images_for(&v("v1.35.2")).unwrap();
        assert_eq!(
            set.under_repository("10.0.0.200:5000/"),
            [
                "10.0.0.200:5000/kube-apiserver:v1.35.2",
                "10.0.0.200:5000/kube-controller-manager:v1.35.2",
                "10.0.0.200:5000/kube-scheduler:v1.35.2",
                "10.0.0.200:5000/kube-proxy:v1.35.2",
                "10.0.0.200:5000/coredns:v1.13.1",
                "10.0.0.200:5000/pause:3.10.1",
                "10.0.0.200:5000/etcd:3.6.6-0",
            ]
        );
        let m = set.mapping("10.0.0.200:5000");
        assert_eq!(m[4], ("registry.k8s.io/coredns/coredns:v1.13.1".into(), "10.0.0.200:5000/coredns/coredns:v1.13.1".into()));
        for (up, site) in &m {
            assert_eq!(up.strip_prefix("registry.k8s.io/"), site.strip_prefix("10.0.0.200:5000/"), "same path at the site");
        }
        // the rule is kubeadm's: only the default registry keeps coredns/coredns
        assert_eq!(set.get(Component::CoreDns).reference("mirror.example/k8s"), "mirror.example/k8s/coredns:v1.13.1");
    }

    #[test]
    fn pulled_with_follows_kubeadms_overrides() {
        use crate::kube::kubeadm_api::v1beta4::{ClusterConfiguration, Etcd, ExternalEtcd, LocalEtcd, Proxy, DNS};
        let set = images_for(&v("v1.36.3")).unwrap();
        let mut cfg = ClusterConfiguration::new();
        assert_eq!(set.pulled_with(&cfg), set.upstream(), "no imageRepository = registry.k8s.io");
        cfg.image_repository = Some("10.0.0.200:5000".into());
        assert_eq!(set.pulled_with(&cfg), set.under_repository("10.0.0.200:5000"));
        cfg.dns = Some(DNS { image_repository: Some("10.0.0.200:5000/coredns".into()), ..Default::default() });
        assert_eq!(set.pulled_with(&cfg), set.at_site("10.0.0.200:5000"));
        cfg.dns = Some(DNS { disabled: Some(true), ..Default::default() });
        cfg.proxy = Some(Proxy { disabled: Some(true) });
        cfg.etcd = Some(Etcd {
            local: Some(LocalEtcd { image_tag: Some("3.6.9-0".into()), ..Default::default() }),
            ..Default::default()
        });
        assert_eq!(
            set.pulled_with(&cfg),
            [
                "10.0.0.200:5000/kube-apiserver:v1.36.3",
                "10.0.0.200:5000/kube-controller-manager:v1.36.3",
                "10.0.0.200:5000/kube-scheduler:v1.36.3",
                "10.0.0.200:5000/pause:3.10.2",
                "10.0.0.200:5000/etcd:3.6.9-0",
            ]
        );
        cfg.etcd = Some(Etcd { external: Some(ExternalEtcd::default()), ..Default::default() });
        assert!(!set.pulled_with(&cfg).iter().any(|r| r.contains("/etcd:")));
    }

    #[test]
    fn refuses_what_the_table_does_not_list() {
        for s in ["v1.35.10", "v1.36.6", "v1.34.10", "v1.37.0", "v2.35.0"] {
            let e = images_for(&v(s)).unwrap_err().to_string();
            assert!(e.contains(s), "{e}");
            assert!(e.contains("v1.35.0-v1.35.7, v1.35.8-v1.35.9, v1.36.0-v1.36.3, v1.36.4-v1.36.5"), "{e}");
            assert!(e.contains("kubeadm config images list --kubernetes-version"), "{e}");
        }
    }

    #[test]
    fn table_rows_do_not_overlap() {
        for (i, a) in TABLE.iter().enumerate() {
            assert!(a.patches.0 <= a.patches.1);
            for b in &TABLE[i + 1..] {
                assert!(a.minor != b.minor || a.patches.1 < b.patches.0 || b.patches.1 < a.patches.0);
            }
        }
    }
}
