//! Recipes: a tested run config per method and kind of data, shipped in the binary like
//! solo-learn's per-method YAML files (`recipes/<data kind>/<method>.toml` in the
//! repository). `--recipe small-grey/simclr` starts a run from one; its flags override it.
//! Each file says how its values were chosen; `base = "<kind>/<method>"` starts a recipe
//! from another, so that it holds only what differs.

use crate::config::RunConfig;
use crate::error::{Error, Result};

/// A recipe shipped in the binary.
pub struct Recipe {
    /// Name, `<data kind>/<method>`.
    pub name: &'static str,
    /// The TOML text (a partial run config: what it leaves out keeps its default).
    pub text: &'static str,
}

/// The recipe `recipes/<kind>/<method>.toml`, named `<kind>/<method>`.
macro_rules! shipped {
    ($kind:literal, $method:literal) => {
        Recipe {
            name: concat!($kind, "/", $method),
            text: include_str!(concat!("../recipes/", $kind, "/", $method, ".toml")),
        }
    };
}

/// Every shipped recipe.
pub const RECIPES: &[Recipe] = &[
    shipped!("small-grey", "simclr"),
    shipped!("small-grey", "simsiam"),
    shipped!("small-grey", "byol"),
    shipped!("small-grey", "mocov3"),
    shipped!("small-grey", "swav"),
    shipped!("small-grey", "cpc"),
    shipped!("small-grey", "jigsaw"),
    shipped!("small-grey", "mae"),
    shipped!("small-grey", "vae"),
];

/// The recipe called `name`, or the TOML file at that path (ending in `.toml`), as a run
/// config; either may start from a shipped recipe with `base = "<kind>/<method>"`.
pub fn load(name: &str) -> Result<RunConfig> {
    if name.ends_with(".toml") {
        let path = std::path::Path::new(name);
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let bad = |e: String| Error::format(path, e);
        return RunConfig::from_toml_str(&resolved_text(&text).map_err(bad)?).map_err(bad);
    }
    let recipe = RECIPES.iter().find(|r| r.name == name).ok_or_else(|| {
        Error::Config(format!(
            "no recipe '{name}'; shipped: {} (or give a path to a .toml file)",
            RECIPES
                .iter()
                .map(|r| r.name)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let bad = |e: String| Error::Config(format!("recipe '{name}': {e}"));
    RunConfig::from_toml_str(&resolved_text(recipe.text).map_err(bad)?).map_err(bad)
}

/// A recipe's TOML with its `base = "<kind>/<method>"` resolved: the base recipe's fields
/// (less its method's own table, when the methods differ) under this recipe's own, so that
/// a recipe says only how it differs from the one it starts from.
fn resolved_text(text: &str) -> std::result::Result<String, String> {
    let mut own: toml::Table = toml::from_str(text).map_err(|e| e.message().to_string())?;
    let Some(base) = own.remove("base") else {
        return Ok(text.to_string());
    };
    let base_name = base.as_str().ok_or("base must be a recipe name")?;
    let base_recipe = RECIPES
        .iter()
        .find(|r| r.name == base_name)
        .ok_or_else(|| format!("no base recipe '{base_name}'"))?;
    let mut merged: toml::Table = toml::from_str(&resolved_text(base_recipe.text)?)
        .map_err(|e| format!("base '{base_name}': {}", e.message()))?;
    if let (Some(from), Some(to)) = (merged.get("method"), own.get("method"))
        && from != to
    {
        let from = from.as_str().unwrap_or_default().to_string();
        merged.remove(&from);
    }
    overlay(&mut merged, own);
    Ok(toml::to_string(&merged).expect("a TOML table serializes"))
}

/// Writes `top` over `under`, table by table.
fn overlay(under: &mut toml::Table, top: toml::Table) {
    for (key, value) in top {
        match (under.get_mut(&key), value) {
            (Some(toml::Value::Table(u)), toml::Value::Table(t)) => overlay(u, t),
            (_, value) => {
                under.insert(key, value);
            }
        }
    }
}

/// The shipped recipe of `method` for data of kind `kind` (`small-grey`), if there is one.
pub fn for_method(kind: &str, method: &str) -> Option<RunConfig> {
    let name = format!("{kind}/{method}");
    RECIPES
        .iter()
        .any(|r| r.name == name)
        .then(|| load(&name).expect("shipped recipes parse (tested)"))
}

/// The first comment paragraph of a recipe: what it is.
pub fn summary(recipe: &Recipe) -> String {
    recipe
        .text
        .lines()
        .take_while(|l| l.starts_with('#') && l.trim() != "#")
        .map(|l| l.trim_start_matches('#').trim())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recipe file that is not in [`RECIPES`] would be silently ignored by `compare`.
    #[test]
    fn every_recipe_file_is_shipped() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes");
        let mut files = Vec::new();
        for kind in std::fs::read_dir(&root).unwrap() {
            let kind = kind.unwrap().path();
            for f in std::fs::read_dir(&kind).unwrap() {
                let f = f.unwrap().path();
                if f.extension().is_some_and(|e| e == "toml") {
                    files.push(format!(
                        "{}/{}",
                        kind.file_name().unwrap().to_string_lossy(),
                        f.file_stem().unwrap().to_string_lossy()
                    ));
                }
            }
        }
        files.sort();
        let mut shipped: Vec<String> = RECIPES.iter().map(|r| r.name.to_string()).collect();
        shipped.sort();
        assert_eq!(files, shipped);
    }

    #[test]
    fn every_recipe_parses_validates_and_names_its_method() {
        for r in RECIPES {
            let mut cfg = load(r.name).unwrap_or_else(|e| panic!("{}: {e}", r.name));
            crate::methods::resolve(&mut cfg).unwrap_or_else(|e| panic!("{}: {e}", r.name));
            assert_eq!(
                Some(cfg.method.as_str()),
                r.name.split('/').nth(1),
                "{}",
                r.name
            );
            assert!(!summary(r).is_empty(), "{} has no summary comment", r.name);
        }
        // The demo's recipe is the configuration it had in code before it became a file, plus
        // the views chosen on the validation split since (the recipe's comment).
        let mut demo = load("small-grey/simclr").unwrap();
        let mut before = RunConfig {
            epochs: 12,
            batch_size: 256,
            ..RunConfig::default()
        };
        before.optim.kind = crate::train::optim::OptimizerKind::Lars;
        before.schedule.lr = 1.0;
        before.schedule.warmup_epochs = 1.0;
        before.views.erase_prob = 0.5;
        before.views.gamma_prob = 0.5;
        before.set_method_settings(&crate::methods::contrastive::simclr::SimClrConfig {
            temperature: 0.2,
            ..Default::default()
        });
        crate::methods::resolve(&mut demo).unwrap();
        crate::methods::resolve(&mut before).unwrap();
        assert_eq!(demo, before);
        // A recipe with `base` is its base with the method swapped in, plus its own fields.
        for method in ["byol", "mocov3", "swav", "cpc", "simsiam", "jigsaw"] {
            let mut r = load(&format!("small-grey/{method}")).unwrap();
            let mut expected = demo.for_method(method);
            match method {
                "simsiam" => expected.schedule.lr = 0.5,
                "jigsaw" => expected.schedule.lr = 0.1,
                _ => {}
            }
            crate::methods::resolve(&mut r).unwrap();
            crate::methods::resolve(&mut expected).unwrap();
            assert_eq!(r, expected, "{method}");
        }
        let e = load("small-grey/nothing").unwrap_err().to_string();
        assert!(
            e.contains("no recipe") && e.contains("small-grey/simclr"),
            "{e}"
        );
    }
}
