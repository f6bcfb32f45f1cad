//! THE YAML line locator: where each field of a block-style YAML document is, so that an error found after
//! parsing (serde values carry no spans) can name its `FILE:LINE`. Used for the bundle manifest
//! (`build::manifest`) and the site inventory (`site`); depends on nothing else in the crate.

/// Where each field of a block-style YAML document is: enough to name the line of a semantic error.
/// A path is a list of mapping keys and sequence indices (`["nodes", "3", "address"]`); when the exact field is
/// not found (flow style, anchors), the nearest enclosing one is returned.
pub struct LineIndex {
    /// (1-based line, indent, key or "-" for a sequence item (with its key, if any, as a second entry))
    entries: Vec<(usize, usize, String)>,
}

impl LineIndex {
    pub fn new(text: &str) -> LineIndex {
        let mut entries = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim_end();
            let content = line.trim_start();
            if content.is_empty() || content.starts_with('#') || content == "---" {
                continue;
            }
            let mut indent = line.len() - content.len();
            let mut rest = content;
            while let Some(r) = rest.strip_prefix('-').filter(|r| r.is_empty() || r.starts_with(' ')) {
                entries.push((i + 1, indent, "-".to_string()));
                let r2 = r.trim_start();
                indent += rest.len() - r2.len();
                rest = r2;
            }
            if let Some((k, _)) = rest.split_once(':') {
                let k = k.trim().trim_matches(|c| c == '"' || c == '\'');
                if !k.is_empty() && !k.contains(' ') && !rest.starts_with(['{', '[']) {
                    entries.push((i + 1, indent, k.to_string()));
                }
            }
        }
        LineIndex { entries }
    }

    /// The line of a field, or of its nearest enclosing field found.
    pub fn line_of(&self, path: &[&str]) -> Option<usize> {
        let mut best = None;
        let mut lo = 0usize; // search range in entries
        let mut hi = self.entries.len();
        let mut min_indent: Option<usize> = None; // children are deeper than their parent
        for seg in path {
            let mut found = None;
            if let Ok(k) = seg.parse::<usize>() {
                // the k-th sequence item at the shallowest "-" indent inside the range
                let item_indent = self.entries[lo..hi]
                    .iter()
                    .filter(|e| e.2 == "-" && min_indent.is_none_or(|m| e.1 >= m))
                    .map(|e| e.1)
                    .min();
                if let Some(ind) = item_indent {
                    let items: Vec<usize> = (lo..hi)
                        .filter(|&j| self.entries[j].2 == "-" && self.entries[j].1 == ind)
                        .collect();
                    if let Some(&j) = items.get(k) {
                        let end = items.get(k + 1).copied().unwrap_or(hi);
                        found = Some((j, end, ind));
                    }
                }
            } else {
                let key_indent = self.entries[lo..hi]
                    .iter()
                    .filter(|e| e.2 != "-" && min_indent.is_none_or(|m| e.1 > m))
                    .map(|e| e.1)
                    .min();
                if let Some(ind) = key_indent {
                    if let Some(j) = (lo..hi).find(|&j| self.entries[j].2 == *seg && self.entries[j].1 == ind) {
                        let end = (j + 1..hi)
                            .find(|&x| self.entries[x].1 <= ind && self.entries[x].2 != "-" || self.entries[x].1 < ind)
                            .unwrap_or(hi);
                        found = Some((j, end, ind));
                    }
                }
            }
            match found {
                Some((j, end, ind)) => {
                    best = Some(self.entries[j].0);
                    lo = j + 1;
                    hi = end;
                    min_indent = Some(ind);
                    // a "- key: v" item: its first key is on the same line, at a deeper indent
                    if seg.parse::<usize>().is_ok() {
                        lo = j + 1;
                    }
                }
                None => break,
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_index_finds_fields() {
        let text = "cluster:\n  name: x\nnodes:\n  - name: a\n    address: 1.1.1.1\n  - name: b\n    address: 1.1.1.2\n    role: master\nvips:\n  masters: 1.2.3.4\n";
        let idx = LineIndex::new(text);
        assert_eq!(idx.line_of(&["cluster", "name"]), Some(2));
        assert_eq!(idx.line_of(&["nodes", "1", "address"]), Some(7));
        assert_eq!(idx.line_of(&["nodes", "0", "name"]), Some(4));
        assert_eq!(idx.line_of(&["nodes", "1", "role"]), Some(8));
        assert_eq!(idx.line_of(&["vips", "masters"]), Some(10));
        assert_eq!(idx.line_of(&["vips", "workers"]), Some(9));
    }

    #[test]
    fn finds_manifest_items_and_fields() {
        // what the manifest asks: list items (a comment between them), fields of items written `-   key:`,
        // a field an item lacks (the item's line), a key or list that is not there (None: the caller says 1)
        let text = "name: a\nversion: '1'\nimages:\n  - x\n  # c\n  - registry.k8s.io/pause:3.10\nfiles:\n  - url: http://h/a\n    path: a\n  -   url: http://h/b\n      sha256: s\n";
        let idx = LineIndex::new(text);
        assert_eq!(idx.line_of(&["version"]), Some(2));
        assert_eq!(idx.line_of(&["images", "1"]), Some(6));
        assert_eq!(idx.line_of(&["files", "1", "sha256"]), Some(11));
        assert_eq!(idx.line_of(&["files", "0", "path"]), Some(9));
        assert_eq!(idx.line_of(&["files", "0", "sha256"]), Some(8));
        assert_eq!(idx.line_of(&["images", "2"]), Some(3));
        assert_eq!(idx.line_of(&["platforms"]), None);
        // flow style: the items are on the key's line; list items at the key's own indent
        let idx = LineIndex::new("platforms: [linux/amd64, linux/arm64]\nimages:\n- a\n- b\npackages: []\n");
        assert_eq!(idx.line_of(&["platforms", "1"]), Some(1));
        assert_eq!(idx.line_of(&["images", "1"]), Some(4));
        assert_eq!(idx.line_of(&["packages", "0", "url"]), Some(5));
    }
}
