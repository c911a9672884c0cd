//! Recipes: a tested run config per method and kind of data, shipped in the binary like
//! solo-learn's per-method YAML files (`recipes/<data kind>/<method>.toml` in the
//! repository). `--recipe small-grey/simclr` starts a run from one; its flags override it.
//! Each file says how its values were chosen.

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
];

/// The recipe called `name`, or the TOML file at that path (ending in `.toml`), as a run
/// config.
pub fn load(name: &str) -> Result<RunConfig> {
    if name.ends_with(".toml") {
        return RunConfig::from_toml_file(std::path::Path::new(name));
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
    RunConfig::from_toml_str(recipe.text)
        .map_err(|e| Error::Config(format!("recipe '{name}': {e}")))
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
        let e = load("small-grey/nothing").unwrap_err().to_string();
        assert!(
            e.contains("no recipe") && e.contains("small-grey/simclr"),
            "{e}"
        );
    }
}
