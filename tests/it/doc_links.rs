//! The documentation's links: every relative link (and image) in README.md, CONTRIBUTING.md,
//! CHANGELOG.md, docs/*.md, python/README.md and deploy/README.md points at a file or directory
//! of the repository, and a `#fragment` into a Markdown file names one of its headings (as GitHub
//! makes their anchors). Links with a scheme (`https:`, `mailto:`) are not followed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

/// The Markdown files a reader of the repository follows links in.
fn documentation_files(root: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = [
        "README.md",
        "CONTRIBUTING.md",
        "CHANGELOG.md",
        "python/README.md",
        "deploy/README.md",
    ]
    .iter()
    .map(|name| root.join(name))
    .collect();
    let docs = std::fs::read_dir(root.join("docs")).expect("docs/ is readable");
    for entry in docs {
        let path = entry.expect("a docs/ entry").path();
        if path.extension().is_some_and(|ext| ext == "md") {
            files.push(path);
        }
    }
    files.sort();
    files
}

fn markdown_options() -> Options {
    Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_FOOTNOTES
}

/// The link and image targets of a Markdown text, in order.
fn link_targets(markdown: &str) -> Vec<String> {
    Parser::new_ext(markdown, markdown_options())
        .filter_map(|event| match event {
            Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => {
                Some(dest_url.into_string())
            }
            _ => None,
        })
        .collect()
}

/// The anchors GitHub gives a Markdown text's headings: the heading's text in lower case, with
/// every character but letters, digits, `-`, `_` and spaces dropped and spaces made `-`; a
/// repeated anchor gets `-1`, `-2`… appended.
fn heading_anchors(markdown: &str) -> HashSet<String> {
    let mut anchors = HashSet::new();
    let mut heading: Option<String> = None;
    for event in Parser::new_ext(markdown, markdown_options()) {
        match event {
            Event::Start(Tag::Heading { .. }) => heading = Some(String::new()),
            Event::Text(text) | Event::Code(text) => {
                if let Some(heading) = heading.as_mut() {
                    heading.push_str(&text);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                let text = heading.take().unwrap_or_default();
                let base: String = text
                    .to_lowercase()
                    .chars()
                    .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
                    .map(|c| if c == ' ' { '-' } else { c })
                    .collect();
                let mut anchor = base.clone();
                let mut repeat = 0;
                while anchors.contains(&anchor) {
                    repeat += 1;
                    anchor = format!("{base}-{repeat}");
                }
                anchors.insert(anchor);
            }
            _ => {}
        }
    }
    anchors
}

/// Whether a link target leaves the repository (`https://…`, `mailto:…`).
fn has_scheme(target: &str) -> bool {
    match target.split_once(':') {
        Some((scheme, _)) => {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

/// Every broken relative link in `file`, each as a line naming the file, the target and what is
/// wrong with it.
fn broken_links(file: &Path) -> Vec<String> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => return vec![format!("{}: cannot be read: {e}", file.display())],
    };
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut broken = Vec::new();
    for target in link_targets(&text) {
        if has_scheme(&target) {
            continue;
        }
        let (path, fragment) = match target.split_once('#') {
            Some((path, fragment)) => (path, Some(fragment)),
            None => (target.as_str(), None),
        };
        let linked = if path.is_empty() {
            file.to_path_buf()
        } else {
            dir.join(path)
        };
        if !linked.exists() {
            broken.push(format!(
                "{}: ({target}) points at {}, which does not exist",
                file.display(),
                linked.display()
            ));
            continue;
        }
        let Some(fragment) = fragment else { continue };
        if linked.extension().is_none_or(|ext| ext != "md") {
            continue;
        }
        let anchors = std::fs::read_to_string(&linked)
            .map(|text| heading_anchors(&text))
            .unwrap_or_default();
        if !anchors.contains(fragment) {
            broken.push(format!(
                "{}: ({target}): {} has no heading whose anchor is #{fragment}",
                file.display(),
                linked.display()
            ));
        }
    }
    broken
}

#[test]
fn every_relative_link_in_the_docs_points_at_an_existing_file_and_heading() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = documentation_files(root);
    let mut links = 0;
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("{} cannot be read: {e}", file.display()));
        links += link_targets(&text).len();
        broken.extend(broken_links(file));
    }
    assert!(
        links > 50,
        "only {links} links found in {files:?}: is the parser reading them?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn a_missing_file_or_heading_is_reported_and_a_good_link_is_not() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::create_dir(dir.path().join("docs")).expect("docs/");
    std::fs::write(
        dir.path().join("docs/guide.md"),
        "# Guide\n\n## The `run` command, in short\n\n## Errors\n\n## Errors\n",
    )
    .expect("guide.md");
    let readme = dir.path().join("README.md");
    std::fs::write(
        &readme,
        "See [the guide](docs/guide.md), [run](docs/guide.md#the-run-command-in-short), \
         [again](docs/guide.md#errors-1), [the web](https://example.com/missing.md), \
         [here](#top) and ![a picture](docs/page.png).\n\n\
         | a | b |\n|---|---|\n| [gone](docs/gone.md) | [bad anchor](docs/guide.md#nothing) |\n\n\
         # Top\n",
    )
    .expect("README.md");
    let broken = broken_links(&readme);
    assert_eq!(broken.len(), 3, "{broken:#?}");
    assert!(broken[0].contains("docs/page.png"), "{broken:#?}");
    assert!(broken[1].contains("docs/gone.md"), "{broken:#?}");
    assert!(broken[2].contains("#nothing"), "{broken:#?}");
}
