//! Software on the nodes from the bundle, as actions: OS packages installed offline from the packages
//! distribute copied (`airgap node packages`), and the bundle's components (static binaries) for the node's
//! platform (`airgap node component`).

use super::kit::REMOTE_FILES_DIR;
use super::{node_cmd, Action, Ctx};
use crate::node::components::Component;
use crate::node::packages::PACKAGES_DIR;
use crate::site::inventory::Node;

/// Install OS packages offline from the packages distribute copied (`a|b`: the first the node's OS has).
pub fn packages(wanted: &[&str]) -> Action {
    let list = wanted.join(",");
    Action::Command {
        argv: node_cmd(&["packages", "--install", &list, "--dir", PACKAGES_DIR]),
        check: Some(node_cmd(&["packages", "--install", &list, "--check"])),
        why: format!("install {} from the bundle's OS packages (offline)", wanted.join(", ")),
    }
}

/// Where distribute puts a bundle file on the nodes.
pub fn remote_file(path: &str) -> String {
    format!("{REMOTE_FILES_DIR}/{path}")
}

/// Install component `c` on the node from the file distribute copied for its platform. `None` when the
/// bundle has no such component. Without the node's facts (`plan`), a placeholder names the choice.
pub fn component(ctx: &Ctx, node: &Node, c: Component) -> Option<Action> {
    let kit = ctx.kit?;
    if !kit.has_component(c) {
        return None;
    }
    let why = format!("install {c} from the bundle into {}", c.destination());
    let Some(target) = ctx.targets.get(&node.name) else {
        return Some(Action::Command {
            argv: node_cmd(&["component", c.name(), "--file", &remote_file("<the file for the node's platform>"), "--sha256", "<its sha256>"]),
            check: None,
            why,
        });
    };
    match kit.component_for(c, &target.platform) {
        Some(f) => Some(Action::Command {
            argv: node_cmd(&["component", c.name(), "--file", &remote_file(&f.path), "--sha256", &f.sha256]),
            check: Some(node_cmd(&["component", c.name(), "--file", &remote_file(&f.path), "--sha256", &f.sha256, "--check"])),
            why,
        }),
        // preflight names a platform the bundle lacks; a component missing for one platform is refused at build
        None => Some(Action::Command {
            argv: vec!["false".into()],
            check: None,
            why: format!("the bundle has no {c} for {} ({}): build it with this platform", target.platform, node.name),
        }),
    }
}
