//! `registrar keygen`: generates a key pair locally, writes the private
//! key, and prints the public JWKS to register with `registrar create`.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;

use super::Algorithm;
use super::error::CliError;
use crate::keys::KeyPair;

/// Options of `registrar keygen`.
#[derive(Debug, Args)]
#[command(after_long_help = concat!("\
Examples:
  registrar keygen --out billing-key.pem > billing-jwks.json
  registrar keygen --algorithm es256 --out billing-key.pem --force > billing-jwks.json
  registrar create billing-worker --jwks billing-jwks.json

The JWKS on standard output holds the public key only, with use \"sig\", its
alg and a kid equal to its RFC 7638 thumbprint. The private key never leaves
the file.",
    "\n\n",
    exit_codes_help!()
))]
pub struct KeygenArgs {
    /// The file to write the private key to, in PKCS#8 PEM with mode 0600.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The key algorithm and size.
    #[arg(long, value_enum, default_value_t = Algorithm::Rs2562048)]
    pub algorithm: Algorithm,
    /// Replace the file if it exists.
    #[arg(long)]
    pub force: bool,
}

/// Generates the key pair, writes the private key and prints the JWKS.
pub async fn run(args: KeygenArgs) -> Result<(), CliError> {
    let algorithm = args.algorithm.to_proto();
    // RSA generation takes from milliseconds to seconds.
    let key = tokio::task::spawn_blocking(move || KeyPair::generate(algorithm))
        .await
        .map_err(|error| CliError::Local(format!("key generation stopped: {error}")))?
        .map_err(|error| CliError::Local(error.to_string()))?;
    let pem = key
        .private_pkcs8_pem()
        .map_err(|error| CliError::Local(error.to_string()))?;
    write_private_key(&args.out, pem.as_bytes(), args.force)?;

    let jwks = json!({ "keys": [crate::jwk::to_okta_json(key.public_jwk())] });
    super::output::print_json(&jwks)?;
    errln!(
        "wrote the {} private key with kid {} to {} (mode 0600)",
        key.algorithm().as_str(),
        key.kid(),
        args.out.display()
    );
    Ok(())
}

/// Writes the key with mode 0600. Without `force` an existing file is
/// kept. With `force`, the key goes to a new file that then replaces the
/// old one, so the old file's mode does not carry over.
fn write_private_key(path: &Path, pem: &[u8], force: bool) -> Result<(), CliError> {
    let failed = |error: std::io::Error| {
        CliError::Local(format!("--out: cannot write {}: {error}", path.display()))
    };
    if !force {
        return match create_private_file(path) {
            Ok(mut file) => file
                .write_all(pem)
                .and_then(|()| file.sync_all())
                .map_err(failed),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(CliError::Usage(format!(
                    "--out: {} exists; pass --force to replace it, or choose another file",
                    path.display()
                )))
            }
            Err(error) => Err(failed(error)),
        };
    }

    let name = path
        .file_name()
        .ok_or_else(|| CliError::Usage(format!("--out: {} is not a file name", path.display())))?;
    let temporary = path.with_file_name(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = create_private_file(&temporary)
        .and_then(|mut file| file.write_all(pem).and_then(|()| file.sync_all()))
        .and_then(|()| std::fs::rename(&temporary, path));
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(failed(error));
    }
    Ok(())
}

fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn force_replaces_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("key.pem");
        std::fs::write(&path, "old").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");

        let refused = write_private_key(&path, b"new", false).expect_err("file exists");
        assert!(refused.to_string().contains("--force"), "{refused}");
        assert_eq!(std::fs::read(&path).expect("read"), b"old");

        write_private_key(&path, b"new", true).expect("replaced");
        assert_eq!(std::fs::read(&path).expect("read"), b"new");
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
