//! Images on a real node: pulled from OCI and Docker registries (with `oci-client`), or
//! imported from a `docker save` / OCI-layout archive; each layer unpacked once into the
//! node's content store and shared by every container that uses it (as an overlayfs lower
//! directory).
//!
//! On disk, under `<data dir>/images/`: `layers/<hex>/` (one unpacked layer, named by the
//! digest of the blob it came from; whiteouts as overlayfs expects them), `index.json`
//! (the images: names, manifest digest, config, layers, size, last use) and `lock` (held
//! while the index is rewritten, so `shoal image` and the agent may both change it).
//!
//! Mirrors, credentials and plain-HTTP registries come from a `registries.yaml` in the
//! format k3s reads (`mirrors.<registry>.endpoint`, `configs.<host>.auth`,
//! `configs.<host>.tls.insecure_skip_verify`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use oci_client::Reference;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use serde::{Deserialize, Serialize};

/// Why an image could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The image name does not parse.
    #[error("invalid image name {0:?}: {1}")]
    Name(String, String),
    /// The registry refused or failed.
    #[error("pulling {0}: {1}")]
    Pull(String, String),
    /// A file could not be read or written.
    #[error("{0}")]
    Io(String),
    /// An archive or blob is not what it claims.
    #[error("{0}")]
    Format(String),
    /// No such image in the store.
    #[error("image {0:?} is not present on this node")]
    Missing(String),
    /// The image is used by a running container.
    #[error("image {0} is in use by a running container")]
    InUse(String),
}

fn io<E: std::fmt::Display>(what: impl std::fmt::Display) -> impl FnOnce(E) -> ImageError {
    move |e| ImageError::Io(format!("{what}: {e}"))
}

/// What an image's config says about running it (the OCI image config's `config`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunConfig {
    /// `Entrypoint`.
    #[serde(default)]
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    #[serde(default)]
    pub cmd: Vec<String>,
    /// `Env`, as `NAME=value`.
    #[serde(default)]
    pub env: Vec<String>,
    /// `WorkingDir` (empty: `/`).
    #[serde(default)]
    pub working_dir: String,
    /// `User` (`uid[:gid]` or a name from the image's `/etc/passwd`).
    #[serde(default)]
    pub user: String,
}

impl RunConfig {
    /// Reads the `config` object of an OCI / Docker image config document.
    pub fn from_image_config(doc: &[u8]) -> Result<RunConfig, ImageError> {
        let v: serde_json::Value =
            serde_json::from_slice(doc).map_err(|e| ImageError::Format(format!("image config: {e}")))?;
        let c = &v["config"];
        let strings = |k: &str| -> Vec<String> {
            c[k].as_array()
                .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
                .unwrap_or_default()
        };
        Ok(RunConfig {
            entrypoint: strings("Entrypoint"),
            cmd: strings("Cmd"),
            env: strings("Env"),
            working_dir: c["WorkingDir"].as_str().unwrap_or_default().to_string(),
            user: c["User"].as_str().unwrap_or_default().to_string(),
        })
    }
}

/// One image in the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    /// Its names (`docker.io/library/nginx:latest`), normalised.
    pub names: Vec<String>,
    /// The digest of its manifest (`sha256:...`).
    pub digest: String,
    /// Its layers, bottom first (blob digests).
    pub layers: Vec<String>,
    /// How to run it.
    pub config: RunConfig,
    /// Bytes of its unpacked layers.
    pub size: u64,
    /// When it was last pulled or used by a container (RFC 3339).
    pub last_used: String,
}

impl Image {
    /// `docker.io/library/nginx@sha256:...`: the name kubelets report as `imageID`.
    pub fn image_id(&self) -> String {
        let repo = self
            .names
            .first()
            .map(|n| n.split_once('@').map_or(n.as_str(), |(r, _)| r))
            .map(|n| match n.rfind(':') {
                Some(i) if !n[i..].contains('/') => &n[..i],
                _ => n,
            })
            .unwrap_or_default();
        format!("{repo}@{}", self.digest)
    }
}

/// Normalises an image name as container runtimes do: `nginx` is
/// `docker.io/library/nginx:latest`.
pub fn normalise(name: &str) -> Result<Reference, ImageError> {
    let trimmed = name.trim();
    if trimmed.is_empty() || trimmed.len() > 4096 {
        return Err(ImageError::Name(name.into(), "empty or too long".into()));
    }
    Reference::try_from(trimmed).map_err(|e| ImageError::Name(name.into(), e.to_string()))
}

/// A `registries.yaml` (the subset of k3s's format shoal reads).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Registries {
    /// Per registry (`docker.io`, `registry.example:5000`), the endpoints that serve it.
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    /// Per registry host, credentials and TLS settings.
    #[serde(default)]
    pub configs: BTreeMap<String, HostConfig>,
}

/// `mirrors.<registry>`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Mirror {
    /// `http://host:port` or `https://host:port`, tried in order.
    #[serde(default)]
    pub endpoint: Vec<String>,
}

/// `configs.<host>`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct HostConfig {
    /// Credentials.
    #[serde(default)]
    pub auth: Option<HostAuth>,
    /// TLS settings.
    #[serde(default)]
    pub tls: Option<HostTls>,
}

/// `configs.<host>.auth`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct HostAuth {
    /// User name.
    #[serde(default)]
    pub username: String,
    /// Password.
    #[serde(default)]
    pub password: String,
}

/// `configs.<host>.tls`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct HostTls {
    /// Accept any certificate.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

impl Registries {
    /// Reads a `registries.yaml`.
    pub fn load(path: &Path) -> Result<Registries, ImageError> {
        let text = std::fs::read_to_string(path).map_err(io(format!("reading {}", path.display())))?;
        serde_yaml_ng::from_str(&text).map_err(|e| ImageError::Format(format!("{}: {e}", path.display())))
    }

    /// Where to pull `r` from, in order: each mirror endpoint of its registry (or of `*`),
    /// then the registry itself. Each as (host, plain HTTP?).
    pub fn endpoints(&self, r: &Reference) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        for key in [r.registry(), "*"] {
            for e in self.mirrors.get(key).map(|m| m.endpoint.as_slice()).unwrap_or_default() {
                let (host, http) = match e.split_once("://") {
                    Some(("http", h)) => (h, true),
                    Some((_, h)) => (h, false),
                    None => (e.as_str(), false),
                };
                let host = host.trim_end_matches('/').trim_end_matches("/v2").to_string();
                if !host.is_empty() && !out.iter().any(|(h, _)| *h == host) {
                    out.push((host, http));
                }
            }
        }
        let own = r.resolve_registry().to_string();
        if !out.iter().any(|(h, _)| *h == own) {
            out.push((own, false));
        }
        out
    }
}

/// Credentials for a registry host from a `.dockerconfigjson` / `.dockercfg` document.
pub fn docker_config_auth(doc: &[u8], host: &str) -> Option<RegistryAuth> {
    let v: serde_json::Value = serde_json::from_slice(doc).ok()?;
    let auths = v.get("auths").unwrap_or(&v);
    let wanted = |k: &str| {
        let k = k.trim_start_matches("https://").trim_start_matches("http://");
        let k = k.split('/').next().unwrap_or(k);
        k == host || (host == "index.docker.io" && k == "docker.io") || (host == "docker.io" && k == "index.docker.io")
    };
    let (_, entry) = auths.as_object()?.iter().find(|(k, _)| wanted(k))?;
    if let (Some(u), Some(p)) = (entry["username"].as_str(), entry["password"].as_str()) {
        return Some(RegistryAuth::Basic(u.into(), p.into()));
    }
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(entry["auth"].as_str()?)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some(RegistryAuth::Basic(u.into(), p.into()))
}

/// The node's image store.
pub struct ImageStore {
    root: PathBuf,
    registries: Registries,
}

fn hex_of(digest: &str) -> Result<&str, ImageError> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| ImageError::Format(format!("digest {digest:?}: only sha256 is supported")))?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ImageError::Format(format!("digest {digest:?} is malformed")));
    }
    Ok(hex)
}

fn sha256_file(path: &Path) -> Result<String, ImageError> {
    let mut f = std::fs::File::open(path).map_err(io(format!("reading {}", path.display())))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io(format!("reading {}", path.display())))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex(ctx.finish().as_ref())))
}

/// A name for a temporary file or directory no other pull or import of this process (or
/// any other) uses at the same time.
fn unique(stem: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{stem}-{}-{n}", std::process::id())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now() -> String {
    shoal_api::time::now_rfc3339()
}

/// Bytes under `dir` (apparent sizes of regular files).
fn du(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}

/// How a layer blob is compressed, from its media type (or its first bytes).
fn decompressor<'a>(media_type: &str, mut file: std::fs::File) -> Result<Box<dyn Read + 'a>, ImageError> {
    use std::io::{Seek, SeekFrom};
    if media_type.contains("zstd") {
        return Err(ImageError::Format(format!(
            "layer media type {media_type} (zstd) is not supported; push the image with gzip layers"
        )));
    }
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic).map_err(io("reading a layer"))?;
    file.seek(SeekFrom::Start(0)).map_err(io("reading a layer"))?;
    if n == 2 && magic == [0x1f, 0x8b] {
        Ok(Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file))))
    } else {
        Ok(Box::new(std::io::BufReader::new(file)))
    }
}

/// A path inside a layer made relative and checked: no `..`, nothing absolute.
fn layer_path(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Unpacks one layer (an uncompressed tar stream) into `dest` as overlayfs wants it:
/// `.wh.NAME` becomes a whiteout (a 0:0 character device), `.wh..wh..opq` marks its
/// directory opaque. Entries that would escape `dest` are refused.
pub fn unpack_layer(reader: impl Read, dest: &Path) -> Result<(), ImageError> {
    use rustix::fs::{CWD, FileType, Mode, XattrFlags, makedev, mknodat, setxattr};
    std::fs::create_dir_all(dest).map_err(io(format!("creating {}", dest.display())))?;
    let mut ar = tar::Archive::new(reader);
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(rustix::process::geteuid().is_root());
    ar.set_preserve_mtime(true);
    ar.set_unpack_xattrs(true);
    ar.set_overwrite(true);
    let entries = ar.entries().map_err(|e| ImageError::Format(format!("layer: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| ImageError::Format(format!("layer: {e}")))?;
        let raw = entry
            .path()
            .map_err(|e| ImageError::Format(format!("layer entry: {e}")))?
            .into_owned();
        let rel = layer_path(&raw)
            .ok_or_else(|| ImageError::Format(format!("layer entry {} leaves the layer", raw.display())))?;
        let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if let Some(hidden) = name.strip_prefix(".wh.") {
            let parent = dest.join(rel.parent().unwrap_or(Path::new("")));
            std::fs::create_dir_all(&parent).map_err(io(format!("creating {}", parent.display())))?;
            if hidden == ".wh..opq" {
                setxattr(&parent, "trusted.overlay.opaque", b"y", XattrFlags::empty())
                    .map_err(io(format!("marking {} opaque", parent.display())))?;
            } else if !hidden.is_empty() {
                let target = parent.join(hidden);
                let _ = std::fs::remove_file(&target);
                mknodat(CWD, &target, FileType::CharacterDevice, Mode::empty(), makedev(0, 0))
                    .map_err(io(format!("making the whiteout {}", target.display())))?;
            }
            continue;
        }
        let ok = entry
            .unpack_in(dest)
            .map_err(|e| ImageError::Format(format!("unpacking {}: {e}", raw.display())))?;
        if !ok {
            return Err(ImageError::Format(format!(
                "layer entry {} leaves the layer",
                raw.display()
            )));
        }
    }
    Ok(())
}

/// Holds the store's lock file (an exclusive `flock`) while alive.
struct Locked(#[allow(dead_code)] std::fs::File);

impl ImageStore {
    /// The store under `root` (created if missing), with these registry settings.
    pub fn open(root: &Path, registries: Registries) -> Result<ImageStore, ImageError> {
        for d in [root.join("layers"), root.join("tmp")] {
            std::fs::create_dir_all(&d).map_err(io(format!("creating {}", d.display())))?;
        }
        Ok(ImageStore {
            root: root.to_path_buf(),
            registries,
        })
    }

    /// Where the store is.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn lock(&self) -> Result<Locked, ImageError> {
        let path = self.root.join("lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(format!("opening {}", path.display())))?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive).map_err(io("locking the image store"))?;
        Ok(Locked(f))
    }

    /// Every image.
    pub fn list(&self) -> Vec<Image> {
        std::fs::read(self.root.join("index.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn write_index(&self, images: &[Image]) -> Result<(), ImageError> {
        let path = self.root.join("index.json");
        let tmp = self.root.join(format!("index.json.{}.tmp", std::process::id()));
        let text = serde_json::to_vec_pretty(images).map_err(|e| ImageError::Io(e.to_string()))?;
        std::fs::write(&tmp, text).map_err(io(format!("writing {}", tmp.display())))?;
        std::fs::rename(&tmp, &path).map_err(io(format!("writing {}", path.display())))
    }

    /// The image a container's `image` names: by digest when it has one, else by name.
    pub fn find(&self, name: &str) -> Option<Image> {
        let r = normalise(name).ok()?;
        let whole = r.whole();
        self.list().into_iter().find(|i| match r.digest() {
            Some(d) => i.digest == d,
            None => i.names.contains(&whole),
        })
    }

    /// The directory of an unpacked layer.
    pub fn layer_dir(&self, digest: &str) -> Result<PathBuf, ImageError> {
        Ok(self.root.join("layers").join(hex_of(digest)?))
    }

    /// The lower directories of `image`, bottom first.
    pub fn layer_dirs(&self, image: &Image) -> Result<Vec<PathBuf>, ImageError> {
        image.layers.iter().map(|l| self.layer_dir(l)).collect()
    }

    /// Unpacks the blob at `blob` into the layer `digest` unless it is there already; the
    /// blob is removed afterwards. Blocking.
    fn add_layer(&self, digest: &str, media_type: &str, blob: &Path) -> Result<(), ImageError> {
        let dir = self.layer_dir(digest)?;
        if dir.is_dir() {
            let _ = std::fs::remove_file(blob);
            return Ok(());
        }
        let got = sha256_file(blob)?;
        if got != digest {
            let _ = std::fs::remove_file(blob);
            return Err(ImageError::Format(format!(
                "layer {digest}: its content hashes to {got}"
            )));
        }
        let tmp = self.root.join("tmp").join(unique(hex_of(digest)?));
        let _ = std::fs::remove_dir_all(&tmp);
        let file = std::fs::File::open(blob).map_err(io(format!("reading {}", blob.display())))?;
        let result = unpack_layer(decompressor(media_type, file)?, &tmp);
        let _ = std::fs::remove_file(blob);
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        match std::fs::rename(&tmp, &dir) {
            Ok(()) => Ok(()),
            // Another pull unpacked it meanwhile.
            Err(_) if dir.is_dir() => {
                let _ = std::fs::remove_dir_all(&tmp);
                Ok(())
            }
            Err(e) => Err(ImageError::Io(format!("storing layer {digest}: {e}"))),
        }
    }

    /// Records an image whose layers are all present, under `name` (names it had before are
    /// kept; the name moves off any other image).
    fn record(
        &self,
        name: Option<String>,
        digest: &str,
        layers: Vec<String>,
        config: RunConfig,
    ) -> Result<Image, ImageError> {
        let _lock = self.lock()?;
        let mut images = self.list();
        if let Some(n) = &name {
            for i in images.iter_mut() {
                i.names.retain(|x| x != n);
            }
        }
        let size = layers
            .iter()
            .filter_map(|l| self.layer_dir(l).ok())
            .map(|d| du(&d))
            .sum();
        let image = match images.iter_mut().find(|i| i.digest == digest) {
            Some(i) => {
                i.names.extend(name);
                i.last_used = now();
                i.clone()
            }
            None => {
                let i = Image {
                    names: name.into_iter().collect(),
                    digest: digest.into(),
                    layers,
                    config,
                    size,
                    last_used: now(),
                };
                images.push(i.clone());
                i
            }
        };
        // An image left with no name and not asked for by digest is dropped (its layers
        // stay until garbage collection).
        images.retain(|i| !i.names.is_empty() || i.digest == digest);
        self.write_index(&images)?;
        Ok(image)
    }

    /// Marks `digest` as just used (for garbage collection's least-recently-used order).
    pub fn touch(&self, digest: &str) {
        let Ok(_lock) = self.lock() else { return };
        let mut images = self.list();
        if let Some(i) = images.iter_mut().find(|i| i.digest == digest) {
            i.last_used = now();
            let _ = self.write_index(&images);
        }
    }

    /// Pulls `name` (with `auth` for its registry, else what `registries.yaml` says), trying
    /// the mirrors first. Layers already present are not fetched again.
    pub async fn pull(&self, name: &str, auth: Option<RegistryAuth>) -> Result<Image, ImageError> {
        let r = normalise(name)?;
        let mut errors = Vec::new();
        for (host, http) in self.registries.endpoints(&r) {
            match self.pull_from(&r, &host, http, auth.clone()).await {
                Ok(i) => return Ok(i),
                Err(e) => {
                    tracing::debug!(image = %r, %host, error = %e, "image pull from one endpoint failed");
                    errors.push(match e {
                        ImageError::Pull(_, why) => format!("{host}: {why}"),
                        other => format!("{host}: {other}"),
                    });
                }
            }
        }
        Err(ImageError::Pull(r.whole(), errors.join("; ")))
    }

    async fn pull_from(
        &self,
        r: &Reference,
        host: &str,
        http: bool,
        auth: Option<RegistryAuth>,
    ) -> Result<Image, ImageError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let host_cfg = self.registries.configs.get(host);
        let insecure = host_cfg
            .and_then(|c| c.tls.as_ref())
            .is_some_and(|t| t.insecure_skip_verify);
        let config = ClientConfig {
            protocol: if http {
                ClientProtocol::HttpsExcept(vec![host.to_string()])
            } else {
                ClientProtocol::Https
            },
            accept_invalid_certificates: insecure,
            connect_timeout: Some(std::time::Duration::from_secs(10)),
            read_timeout: Some(std::time::Duration::from_secs(60)),
            ..Default::default()
        };
        let client = oci_client::Client::new(config);
        let auth = auth
            .or_else(|| {
                host_cfg
                    .and_then(|c| c.auth.as_ref())
                    .map(|a| RegistryAuth::Basic(a.username.clone(), a.password.clone()))
            })
            .unwrap_or(RegistryAuth::Anonymous);
        let at = match (r.tag(), r.digest()) {
            (_, Some(d)) => Reference::with_digest(host.into(), r.repository().into(), d.into()),
            (t, None) => Reference::with_tag(host.into(), r.repository().into(), t.unwrap_or("latest").into()),
        };
        let whole = r.whole();
        let fail = |e: oci_client::errors::OciDistributionError| ImageError::Pull(whole.clone(), e.to_string());
        let (manifest, digest, config) = client.pull_manifest_and_config(&at, &auth).await.map_err(fail)?;
        if let Some(want) = r.digest()
            && want != digest
        {
            return Err(ImageError::Pull(
                whole,
                format!("the registry served manifest {digest}, not {want}"),
            ));
        }
        let run = RunConfig::from_image_config(config.as_bytes())?;
        for layer in &manifest.layers {
            if self.layer_dir(&layer.digest)?.is_dir() {
                continue;
            }
            let blob = self
                .root
                .join("tmp")
                .join(unique(&format!("{}.blob", hex_of(&layer.digest)?)));
            let file = tokio::fs::File::create(&blob)
                .await
                .map_err(io(format!("creating {}", blob.display())))?;
            let pulled = client.pull_blob(&at, layer, file).await;
            if let Err(e) = pulled {
                let _ = tokio::fs::remove_file(&blob).await;
                return Err(fail(e));
            }
            let (digest, media) = (layer.digest.clone(), layer.media_type.clone());
            let store = ImageStore {
                root: self.root.clone(),
                registries: Registries::default(),
            };
            tokio::task::spawn_blocking(move || store.add_layer(&digest, &media, &blob))
                .await
                .map_err(|e| ImageError::Io(e.to_string()))??;
        }
        let layers = manifest.layers.iter().map(|l| l.digest.clone()).collect();
        let name = r.digest().is_none().then_some(whole);
        self.record(name, &digest, layers, run)
    }

    /// Imports every image of a `docker save` archive or an OCI image layout tar. Blocking.
    pub fn import(&self, archive: &Path) -> Result<Vec<Image>, ImageError> {
        let tmp = self.root.join("tmp").join(unique("import"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
        let result = (|| {
            let f = std::fs::File::open(archive).map_err(io(format!("reading {}", archive.display())))?;
            let mut ar = tar::Archive::new(decompressor("", f)?);
            ar.set_preserve_ownerships(false);
            for entry in ar
                .entries()
                .map_err(|e| ImageError::Format(format!("{}: {e}", archive.display())))?
            {
                let mut entry = entry.map_err(|e| ImageError::Format(format!("{}: {e}", archive.display())))?;
                if !entry
                    .unpack_in(&tmp)
                    .map_err(|e| ImageError::Format(format!("{}: {e}", archive.display())))?
                {
                    return Err(ImageError::Format(format!(
                        "{}: an entry leaves the archive",
                        archive.display()
                    )));
                }
            }
            if tmp.join("index.json").is_file() {
                self.import_oci_layout(&tmp)
            } else if tmp.join("manifest.json").is_file() {
                self.import_docker_archive(&tmp)
            } else {
                Err(ImageError::Format(format!(
                    "{}: neither an OCI image layout (index.json) nor a docker save archive (manifest.json)",
                    archive.display()
                )))
            }
        })();
        let _ = std::fs::remove_dir_all(&tmp);
        result
    }

    fn import_oci_layout(&self, dir: &Path) -> Result<Vec<Image>, ImageError> {
        let read_json = |p: &Path| -> Result<serde_json::Value, ImageError> {
            let b = std::fs::read(p).map_err(io(format!("reading {}", p.display())))?;
            serde_json::from_slice(&b).map_err(|e| ImageError::Format(format!("{}: {e}", p.display())))
        };
        let blob = |digest: &str| -> Result<PathBuf, ImageError> { Ok(dir.join("blobs/sha256").join(hex_of(digest)?)) };
        let index = read_json(&dir.join("index.json"))?;
        let mut out = Vec::new();
        let mut todo: Vec<(serde_json::Value, Option<String>)> = index["manifests"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                let ann = &m["annotations"];
                let name = ann["io.containerd.image.name"]
                    .as_str()
                    .or_else(|| ann["org.opencontainers.image.ref.name"].as_str())
                    .map(String::from);
                (m, name)
            })
            .collect();
        while let Some((desc, name)) = todo.pop() {
            let digest = desc["digest"].as_str().unwrap_or_default().to_string();
            let path = blob(&digest)?;
            if sha256_file(&path)? != digest {
                return Err(ImageError::Format(format!("blob {digest} does not match its digest")));
            }
            let doc = read_json(&path)?;
            if let Some(children) = doc["manifests"].as_array() {
                // An index: the manifest for this platform.
                let pick = children.iter().find(|c| {
                    c["platform"]["os"].as_str().is_none_or(|o| o == "linux")
                        && c["platform"]["architecture"]
                            .as_str()
                            .is_none_or(|a| a == crate::agent::arch())
                });
                if let Some(c) = pick {
                    todo.push((c.clone(), name));
                }
                continue;
            }
            let config_digest = doc["config"]["digest"].as_str().unwrap_or_default();
            let config = std::fs::read(blob(config_digest)?).map_err(io(format!("reading config {config_digest}")))?;
            let mut layers = Vec::new();
            for l in doc["layers"].as_array().into_iter().flatten() {
                let d = l["digest"].as_str().unwrap_or_default().to_string();
                // Copied out first: the layer's blob is removed once unpacked.
                let src = blob(&d)?;
                let copy = self.root.join("tmp").join(unique(&format!("{}.blob", hex_of(&d)?)));
                std::fs::copy(&src, &copy).map_err(io(format!("reading layer {d}")))?;
                self.add_layer(&d, l["mediaType"].as_str().unwrap_or_default(), &copy)?;
                layers.push(d);
            }
            let name = name
                .map(|n| {
                    if n.contains(':') || n.contains('/') {
                        n
                    } else {
                        format!("localhost/import:{n}")
                    }
                })
                .map(|n| normalise(&n).map(|r| r.whole()))
                .transpose()?;
            out.push(self.record(name, &digest, layers, RunConfig::from_image_config(&config)?)?);
        }
        Ok(out)
    }

    fn import_docker_archive(&self, dir: &Path) -> Result<Vec<Image>, ImageError> {
        let path = dir.join("manifest.json");
        let text = std::fs::read(&path).map_err(io(format!("reading {}", path.display())))?;
        let manifests: Vec<serde_json::Value> =
            serde_json::from_slice(&text).map_err(|e| ImageError::Format(format!("manifest.json: {e}")))?;
        let inside = |p: &str| -> Result<PathBuf, ImageError> {
            layer_path(Path::new(p))
                .map(|r| dir.join(r))
                .ok_or_else(|| ImageError::Format(format!("manifest.json names {p:?} outside the archive")))
        };
        let mut out = Vec::new();
        for m in manifests {
            let config = std::fs::read(inside(m["Config"].as_str().unwrap_or_default())?)
                .map_err(io("reading the image config"))?;
            let mut config_hash = ring::digest::Context::new(&ring::digest::SHA256);
            config_hash.update(&config);
            // A docker archive has no manifest: the image is known by its config's digest.
            let digest = format!("sha256:{}", hex(config_hash.finish().as_ref()));
            let mut layers = Vec::new();
            for l in m["Layers"].as_array().into_iter().flatten() {
                let src = inside(l.as_str().unwrap_or_default())?;
                let d = sha256_file(&src)?;
                let copy = self.root.join("tmp").join(unique(&format!("{}.blob", hex_of(&d)?)));
                std::fs::copy(&src, &copy).map_err(io(format!("reading layer {}", src.display())))?;
                self.add_layer(&d, "", &copy)?;
                layers.push(d);
            }
            let run = RunConfig::from_image_config(&config)?;
            let tags: Vec<String> = m["RepoTags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str())
                .map(|t| normalise(t).map(|r| r.whole()))
                .collect::<Result<_, _>>()?;
            let mut image = self.record(None, &digest, layers.clone(), run.clone())?;
            for t in tags {
                image = self.record(Some(t), &digest, layers.clone(), run.clone())?;
            }
            out.push(image);
        }
        Ok(out)
    }

    /// Removes the image `name` (a name or a digest) unless `in_use` holds its digest; then
    /// removes layers no image uses.
    pub fn remove(&self, name: &str, in_use: &BTreeSet<String>) -> Result<Image, ImageError> {
        let _lock = self.lock()?;
        let mut images = self.list();
        let whole = normalise(name).map(|r| r.whole()).unwrap_or_default();
        let pos = images
            .iter()
            .position(|i| i.digest == name || i.names.iter().any(|n| *n == whole || n == name))
            .ok_or_else(|| ImageError::Missing(name.into()))?;
        if in_use.contains(&images[pos].digest) {
            return Err(ImageError::InUse(images[pos].digest.clone()));
        }
        let gone = images.remove(pos);
        self.write_index(&images)?;
        self.prune_layers(&images, in_use);
        Ok(gone)
    }

    /// Removes unpacked layers that no image (and no running container's image) uses.
    fn prune_layers(&self, images: &[Image], in_use: &BTreeSet<String>) {
        let kept: BTreeSet<String> = images
            .iter()
            .flat_map(|i| i.layers.iter())
            .filter_map(|l| hex_of(l).ok().map(String::from))
            .collect();
        let _ = in_use;
        for e in std::fs::read_dir(self.root.join("layers"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let n = e.file_name().to_string_lossy().to_string();
            if !kept.contains(&n) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    /// Image garbage collection as the kubelet does it: when the file system holding the
    /// store is more than `high` percent full, unused images go, least recently used first,
    /// until it is under `low` percent. Returns the digests removed.
    pub fn collect_garbage(&self, high: u8, low: u8, in_use: &BTreeSet<String>) -> Vec<String> {
        let root = self.root.clone();
        self.collect_garbage_when(high, low, in_use, move || {
            let s = rustix::fs::statvfs(&root).ok()?;
            let total = s.f_blocks.max(1);
            Some(u8::try_from(100 - s.f_bavail.saturating_mul(100) / total).unwrap_or(100))
        })
    }

    /// [`ImageStore::collect_garbage`] with the disk usage (percent) told by `used`.
    pub fn collect_garbage_when(
        &self,
        high: u8,
        low: u8,
        in_use: &BTreeSet<String>,
        used: impl Fn() -> Option<u8>,
    ) -> Vec<String> {
        if used().is_none_or(|u| u <= high) {
            return Vec::new();
        }
        let mut candidates: Vec<Image> = self
            .list()
            .into_iter()
            .filter(|i| !in_use.contains(&i.digest))
            .collect();
        candidates.sort_by(|a, b| a.last_used.cmp(&b.last_used));
        let mut removed = Vec::new();
        for i in candidates {
            if used().is_some_and(|u| u < low) {
                break;
            }
            if self.remove(&i.digest, in_use).is_ok() {
                tracing::info!(image = ?i.names, digest = %i.digest, "image garbage collection removed an unused image");
                removed.push(i.digest);
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            b.append_data(&mut h, path, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn names_are_normalised_as_runtimes_do() {
        assert_eq!(normalise("nginx").unwrap().whole(), "docker.io/library/nginx:latest");
        assert_eq!(normalise("fluentd:v1").unwrap().whole(), "docker.io/library/fluentd:v1");
        assert_eq!(
            normalise("127.0.0.1:5000/go-myweb:alpine").unwrap().whole(),
            "127.0.0.1:5000/go-myweb:alpine"
        );
        assert!(normalise("").is_err());
        assert!(normalise("no spaces allowed").is_err());
    }

    #[test]
    fn mirrors_come_before_the_registry() {
        let regs: Registries = serde_yaml_ng::from_str(
            "mirrors:\n  docker.io:\n    endpoint: [\"http://127.0.0.1:5000\"]\nconfigs:\n  127.0.0.1:5000:\n    auth: {username: u, password: p}\n",
        )
        .unwrap();
        let r = normalise("nginx").unwrap();
        assert_eq!(
            regs.endpoints(&r),
            vec![
                ("127.0.0.1:5000".to_string(), true),
                ("index.docker.io".to_string(), false)
            ]
        );
        let other = normalise("quay.io/x/y").unwrap();
        assert_eq!(regs.endpoints(&other), vec![("quay.io".to_string(), false)]);
    }

    #[test]
    fn docker_config_credentials_are_found_by_host() {
        use base64::Engine;
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        let doc = serde_json::json!({"auths": {"https://registry.example:5000/v1/": {"auth": auth}}});
        let got = docker_config_auth(doc.to_string().as_bytes(), "registry.example:5000");
        assert!(matches!(got, Some(RegistryAuth::Basic(u, p)) if u == "alice" && p == "s3cret"));
        assert!(docker_config_auth(doc.to_string().as_bytes(), "other:5000").is_none());
    }

    #[test]
    fn layers_unpack_with_whiteouts_and_refuse_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("l");
        unpack_layer(
            &tar_of(&[("etc/a", b"1"), ("./etc/.wh.b", b""), ("var/.wh..wh..opq", b"")])[..],
            &dest,
        )
        .unwrap();
        assert_eq!(std::fs::read(dest.join("etc/a")).unwrap(), b"1");
        if rustix::process::geteuid().is_root() {
            use std::os::unix::fs::FileTypeExt;
            let wh = std::fs::symlink_metadata(dest.join("etc/b")).unwrap();
            assert!(wh.file_type().is_char_device(), "a whiteout is a character device");
            let mut buf = [0u8; 4];
            let n = rustix::fs::getxattr(dest.join("var"), "trusted.overlay.opaque", &mut buf).unwrap();
            assert_eq!(&buf[..n], b"y");
        }
        // A raw header whose name climbs out.
        let mut evil = tar_of(&[("xx/escape", b"bad")]);
        evil[..9].copy_from_slice(b"../escape");
        let r = unpack_layer(&evil[..], &dir.path().join("m"));
        assert!(r.is_err(), "{r:?}");
        assert!(!dir.path().join("escape").exists());
    }

    #[test]
    fn garbage_collection_removes_unused_images_oldest_first_until_under_the_low_mark() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path(), Registries::default()).unwrap();
        let image = |n: u8, used: &str| Image {
            names: vec![format!("docker.io/library/i{n}:latest")],
            digest: format!("sha256:{}", format!("{n:02}").repeat(32)),
            layers: vec![],
            config: RunConfig::default(),
            size: 0,
            last_used: used.into(),
        };
        store
            .write_index(&[
                image(1, "2026-01-03T00:00:00Z"),
                image(2, "2026-01-01T00:00:00Z"),
                image(3, "2026-01-02T00:00:00Z"),
            ])
            .unwrap();
        // The disk fills with the images: 70% plus 7% each.
        let used = || Some(70 + 7 * u8::try_from(store.list().len()).unwrap_or(0));
        assert_eq!(used(), Some(91));
        // Over the high mark: the least recently used unused image first (i2 is in use, i3
        // is older than i1), until under the low mark.
        let in_use = BTreeSet::from([image(2, "").digest]);
        let removed = store.collect_garbage_when(85, 80, &in_use, used);
        assert_eq!(removed, vec![image(3, "").digest, image(1, "").digest]);
        assert_eq!(store.list().len(), 1, "stops under the low mark");
        // Under the high mark nothing goes.
        assert!(store.collect_garbage_when(85, 80, &BTreeSet::new(), used).is_empty());
    }

    #[test]
    fn image_ids_name_the_repository_and_the_digest() {
        let i = Image {
            names: vec!["127.0.0.1:5000/web:v2".into()],
            digest: "sha256:ab".into(),
            layers: vec![],
            config: RunConfig::default(),
            size: 0,
            last_used: String::new(),
        };
        assert_eq!(i.image_id(), "127.0.0.1:5000/web@sha256:ab");
    }
}
