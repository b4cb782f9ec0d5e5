//! Compiles every `.proto` under the workspace's `proto/` directory with protox (pure Rust, so a fresh
//! machine needs no system `protoc`) and generates tonic clients and servers. Servers get default stubs
//! so an RPC a service has not implemented answers `UNIMPLEMENTED` instead of failing to compile.
//!
//! It also reads the `(ncy.auth.v1.required_scope)` option of every RPC into `REQUIRED_SCOPES`, and
//! fails the build when an RPC of an `ncy.` service has none: no RPC can be served without a scope.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const SCOPE_OPTION: &str = "ncy.auth.v1.required_scope";

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}

/// `service:capability` in lower case, or `*`-free: what `ncy_runtime::auth` can grant.
fn valid_scope(scope: &str) -> bool {
    let mut parts = scope.split(':');
    let ok = |p: Option<&str>| {
        p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

/// `("/pkg.Service/Method", "scope")` for every RPC, as Rust source.
fn scopes_table(pool: &prost_reflect::DescriptorPool) -> Result<String, String> {
    let ext = pool
        .get_extension_by_name(SCOPE_OPTION)
        .ok_or_else(|| format!("{SCOPE_OPTION} is not defined (proto/ncy/auth/v1/auth.proto)"))?;
    let mut rows = Vec::new();
    for service in pool.services() {
        if !service.full_name().starts_with("ncy.") {
            continue;
        }
        for method in service.methods() {
            let options = method.options();
            let scope = options
                .has_extension(&ext)
                .then(|| options.get_extension(&ext).as_str().map(str::to_owned))
                .flatten()
                .ok_or_else(|| {
                    format!(
                        "rpc {} has no `option ({SCOPE_OPTION}) = \"<service>:<capability>\";` \
                         — every RPC must name the API-key scope it needs",
                        method.full_name()
                    )
                })?;
            if !valid_scope(&scope) {
                return Err(format!(
                    "rpc {}: scope {scope:?} is not `<service>:<capability>` in lower case",
                    method.full_name()
                ));
            }
            rows.push((format!("/{}/{}", service.full_name(), method.name()), scope));
        }
    }
    rows.sort();
    let mut out = String::from(
        "/// `(\"/package.Service/Method\", scope)` for every RPC, from the protos' \
         `(ncy.auth.v1.required_scope)` options, sorted by path.\n\
         pub const REQUIRED_SCOPES: &[(&str, &str)] = &[\n",
    );
    for (path, scope) in rows {
        let _ = writeln!(out, "    ({path:?}, {scope:?}),");
    }
    out.push_str("];\n");
    Ok(out)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let mut files = Vec::new();
    collect(&root, &mut files)?;
    files.sort();
    let relative: Vec<PathBuf> = files
        .iter()
        .map(|f| f.strip_prefix(&root).map(Path::to_path_buf))
        .collect::<Result<_, _>>()?;

    let mut compiler = protox::Compiler::new([&root])?;
    compiler.open_files(&relative)?;
    let fds = compiler.file_descriptor_set();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // The set served by reflection and read by ncyctl keeps the imports (auth.proto extends
    // google/protobuf/descriptor.proto) and the custom options (grpcurl shows each RPC's scope).
    compiler.include_imports(true);
    std::fs::write(
        out_dir.join("ncy_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    std::fs::write(
        out_dir.join("ncy_scopes.rs"),
        scopes_table(&compiler.descriptor_pool())?,
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .generate_default_stubs(true)
        // Requests that do not decode answer INVALID_ARGUMENT, not tonic's INTERNAL.
        .codec_path("crate::codec::ProstCodec")
        .compile_fds(fds)?;

    println!("cargo:rerun-if-changed={}", root.display());
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    Ok(())
}
