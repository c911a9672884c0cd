//! Checkpoints as safetensors files, written atomically (temporary file, fsync, rename).
//!
//! `last.safetensors` holds the model's tensors under PyTorch's names (Linear weights
//! transposed to PyTorch's `[out, in]`; BatchNorm's `weight`, `bias`, `running_mean`,
//! `running_var` and an `int64` `num_batches_tracked`; ResNet shortcuts as `downsample.0` /
//! `downsample.1`), so `safetensors.torch.load_file` reads it directly and the tensors under
//! `backbone.` load into torchvision's `resnet18` / `resnet50` as they are. Checkpoints written
//! before these names (burn's `gamma` / `beta`, `downsample.conv`) still load: their names are
//! upgraded when read ([`crate::nn::upgrade_legacy_param_name`]).
//! `last.ckpt.safetensors` holds what `--resume` needs: the same tensors, the method's state
//! (queues, memory banks, positive sets), the optimizer state (`optim.PATH.0`, ...) and, in
//! its metadata, the step and the method.

use crate::error::{Error, Result};
use crate::nn::ParamPath;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use safetensors::tensor::{Dtype, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

/// A named tensor in host memory.
#[derive(Clone, Debug, PartialEq)]
pub struct HostParam {
    /// Shape, outermost first.
    pub shape: Vec<usize>,
    /// Row-major `f32` values.
    pub data: Vec<f32>,
}

fn transpose(shape: &[usize], data: &[f32]) -> (Vec<usize>, Vec<f32>) {
    let (r, c) = (shape[0], shape[1]);
    let mut out = vec![0.0; data.len()];
    for i in 0..r {
        for j in 0..c {
            out[j * r + i] = data[i * c + j];
        }
    }
    (vec![c, r], out)
}

struct Collector {
    tracker: ParamPath,
    out: BTreeMap<String, HostParam>,
}

impl ModuleVisitor for Collector {
    fn enter_module(&mut self, name: &str, ty: &str) {
        self.tracker.enter(name, ty);
    }
    fn exit_module(&mut self, _name: &str, ty: &str) {
        self.tracker.exit(ty);
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let shape = t.dims().to_vec();
        let data: Vec<f32> = t
            .into_data()
            .convert::<f32>()
            .try_to_vec()
            .expect("f32 data");
        let p = if self.tracker.is_linear_weight() && D == 2 {
            let (shape, data) = transpose(&shape, &data);
            HostParam { shape, data }
        } else {
            HostParam { shape, data }
        };
        self.out.insert(self.tracker.name(), p);
    }
}

/// All float tensors of `module` (parameters and running statistics), by PyTorch-style name.
pub fn collect<M: Module>(module: &M) -> BTreeMap<String, HostParam> {
    // BatchNorm's running statistics lag one update behind until synchronized; `valid()`
    // synchronizes them (the inference copy it returns is dropped).
    let _ = module.valid();
    let mut c = Collector {
        tracker: ParamPath::default(),
        out: BTreeMap::new(),
    };
    module.visit(&mut c);
    c.out
}

struct Loader<'a> {
    tracker: ParamPath,
    tensors: &'a HashMap<String, HostParam>,
    problems: Vec<String>,
    used: Vec<String>,
}

impl ModuleMapper for Loader<'_> {
    fn enter_module(&mut self, name: &str, ty: &str) {
        self.tracker.enter(name, ty);
    }
    fn exit_module(&mut self, _name: &str, ty: &str) {
        self.tracker.exit(ty);
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let name = self.tracker.name();
        let want: Vec<usize> = tensor.dims().to_vec();
        let Some(p) = self.tensors.get(&name) else {
            self.problems
                .push(format!("missing tensor '{name}' (shape {want:?})"));
            return Param::from_mapped_value(id, tensor, mapper);
        };
        self.used.push(name.clone());
        let (shape, data) = if self.tracker.is_linear_weight() && D == 2 && p.shape.len() == 2 {
            transpose(&p.shape, &p.data)
        } else {
            (p.shape.clone(), p.data.clone())
        };
        if shape != want {
            self.problems.push(format!(
                "tensor '{name}' has shape {shape:?} in the checkpoint, the model needs {want:?}"
            ));
            return Param::from_mapped_value(id, tensor, mapper);
        }
        let require_grad = tensor.is_require_grad();
        let device = tensor.device();
        let mut t = Tensor::<D>::from_data(TensorData::new(data, shape), &device);
        if require_grad {
            t = t.require_grad();
        }
        Param::from_mapped_value(id, t, mapper)
    }
}

/// Replaces every float tensor of `module` by the tensor of the same name; errors list every
/// missing or mis-shaped tensor (and unexpected extra ones), naming `path`.
pub fn apply<M: Module>(module: M, tensors: &HashMap<String, HostParam>, path: &Path) -> Result<M> {
    let mut l = Loader {
        tracker: ParamPath::default(),
        tensors,
        problems: vec![],
        used: vec![],
    };
    // A BatchNorm running statistic keeps its last update pending (per thread) until it is
    // synchronized, and the next training forward commits a pending one over whatever value
    // is loaded here. A network that ran a forward pass before loading (a shape probe at
    // build time) would have its loaded statistics overwritten at the first step after a
    // resume; synchronizing first leaves nothing pending, so the loaded values stand.
    let _ = module.valid();
    let module = module.map(&mut l);
    let mut problems = l.problems;
    let used: std::collections::HashSet<&String> = l.used.iter().collect();
    let mut extra: Vec<&String> = tensors.keys().filter(|k| !used.contains(k)).collect();
    extra.sort();
    if !extra.is_empty() && !problems.is_empty() {
        problems.push(format!(
            "unexpected tensors: {}",
            extra
                .iter()
                .take(8)
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if problems.is_empty() {
        Ok(module)
    } else {
        let n = problems.len();
        let shown: Vec<String> = problems.into_iter().take(12).collect();
        Err(Error::Checkpoint {
            path: path.to_path_buf(),
            message: format!(
                "does not fit this model (wrong backbone or method?): {n} problem(s): {}",
                shown.join("; ")
            ),
        })
    }
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    {
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Deletes the temporary files [`write_atomic`] leaves in `dir` when a process is killed
/// mid-write (`.NAME.tmp-PID`); they are never read.
pub fn remove_stale_temporaries(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with('.') && name.contains(".tmp-") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Metadata key saying which naming scheme a checkpoint's tensors follow; files without it
/// were written with burn's names and are upgraded when read.
const NAMES_KEY: &str = "tensor_names";
/// [`NAMES_KEY`]'s value for PyTorch's names.
const TORCH_NAMES: &str = "pytorch";

/// The BatchNorm layers among `tensors` (those with a `running_mean` and a `running_var`):
/// the prefixes under which PyTorch keeps a `num_batches_tracked` counter.
fn batch_norm_prefixes(tensors: &BTreeMap<String, HostParam>) -> Vec<String> {
    tensors
        .keys()
        .filter_map(|k| k.strip_suffix(".running_var"))
        .filter(|p| tensors.contains_key(&format!("{p}.running_mean")))
        .map(str::to_string)
        .collect()
}

/// Serializes named tensors and string metadata to safetensors bytes. Each BatchNorm layer
/// also gets PyTorch's `int64` scalar `num_batches_tracked`, set to the `step` the metadata
/// names (selfsup's BatchNorm uses a fixed momentum, so PyTorch never reads the count; the
/// tensor is there so that `load_state_dict` finds every key it expects).
pub fn to_safetensors(
    tensors: &BTreeMap<String, HostParam>,
    mut metadata: BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    metadata.insert(NAMES_KEY.to_string(), TORCH_NAMES.to_string());
    let batches: i64 = metadata
        .get("step")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut bytes: Vec<(String, Dtype, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(k, p)| {
            (
                k.clone(),
                Dtype::F32,
                p.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                p.shape.clone(),
            )
        })
        .collect();
    for p in batch_norm_prefixes(tensors) {
        let name = format!("{p}.num_batches_tracked");
        bytes.push((name, Dtype::I64, batches.to_le_bytes().to_vec(), vec![]));
    }
    let views: Vec<(String, TensorView<'_>)> = bytes
        .iter()
        .map(|(k, dtype, b, s)| {
            (
                k.clone(),
                TensorView::new(*dtype, s.clone(), b).expect("consistent tensor view"),
            )
        })
        .collect();
    let meta: HashMap<String, String> = metadata.into_iter().collect();
    safetensors::serialize(views, Some(meta))
        .map_err(|e| Error::Config(format!("cannot serialize safetensors: {e}")))
}

/// Writes named tensors and metadata to a safetensors file, atomically.
pub fn save(
    path: &Path,
    tensors: &BTreeMap<String, HostParam>,
    metadata: BTreeMap<String, String>,
) -> Result<()> {
    write_atomic(path, &to_safetensors(tensors, metadata)?)
}

/// Reads a safetensors file: its `f32` tensors by PyTorch-style name (old burn-named files
/// upgraded), and its metadata. BatchNorm's `int64` `num_batches_tracked` counters are
/// skipped (nothing in selfsup reads them).
pub fn load(path: &Path) -> Result<(HashMap<String, HostParam>, BTreeMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::format(path, format!("not a valid safetensors file: {e}")))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| Error::format(path, format!("not a valid safetensors file: {e}")))?;
    let metadata: BTreeMap<String, String> = header
        .metadata()
        .clone()
        .map(|m| m.into_iter().collect())
        .unwrap_or_default();
    let legacy = metadata.get(NAMES_KEY).map(String::as_str) != Some(TORCH_NAMES);
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() == Dtype::I64 && name.ends_with(".num_batches_tracked") {
            continue;
        }
        if view.dtype() != Dtype::F32 {
            return Err(Error::format(
                path,
                format!(
                    "tensor '{name}' has dtype {:?}; only F32 is read",
                    view.dtype()
                ),
            ));
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let name = if legacy {
            crate::nn::upgrade_legacy_param_name(&name)
        } else {
            name
        };
        out.insert(
            name,
            HostParam {
                shape: view.shape().to_vec(),
                data,
            },
        );
    }
    Ok((out, metadata))
}

/// A checkpoint's backbone tensors, named relative to the backbone (those under the
/// `backbone_prefix` its metadata names, `backbone.` by default); an error if there are none.
pub fn load_backbone_tensors(path: &Path) -> Result<HashMap<String, HostParam>> {
    let (tensors, meta) = load(path)?;
    let prefix = meta
        .get("backbone_prefix")
        .map_or("backbone.", String::as_str);
    let sub: HashMap<String, HostParam> = tensors
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix(prefix).map(|s| (s.to_string(), v)))
        .collect();
    if sub.is_empty() {
        return Err(Error::Checkpoint {
            path: path.to_path_buf(),
            message: format!("has no '{prefix}*' tensors"),
        });
    }
    Ok(sub)
}

/// Builds a backbone from `cfg` and loads a checkpoint's backbone tensors into it.
pub fn load_backbone(
    path: &Path,
    cfg: &crate::nn::BackboneConfig,
    in_channels: usize,
    device: &Device,
) -> Result<crate::nn::Backbone> {
    let sub = load_backbone_tensors(path)?;
    apply(
        crate::nn::Backbone::new(cfg, in_channels, device),
        &sub,
        path,
    )
}
