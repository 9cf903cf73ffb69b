//! RSA-2048 client assertions signed per second on one thread with the
//! registrar's own signing code, against `openssl speed rsa2048` and
//! against aws-lc-rs signing with a key pair that is parsed once.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use registrar_api::v1::KeyAlgorithm;
use registrar_server::keys::KeyPair;
use registrar_server::keys::sign::client_assertion;

use crate::stats::{ratio, verdict};

/// An audience of the length of a real org's token endpoint.
const AUDIENCE: &str = "https://example.okta.com/oauth2/v1/token";

/// Settings of one run.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Seconds per measurement, passed to `openssl speed -seconds`.
    pub seconds: u32,
    /// Rounds of openssl, registrar and aws-lc-rs, run in turn.
    pub rounds: usize,
}

/// Signatures per second of each signer, summed over all rounds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rates {
    /// `registrar_server::keys::sign::client_assertion`.
    pub registrar: f64,
    /// `openssl speed rsa2048`, sign/s; `None` without an `openssl` binary.
    pub openssl: Option<f64>,
    /// aws-lc-rs `RsaKeyPair::sign` with the key parsed once.
    pub aws_lc_reused_key: f64,
    /// aws-lc-rs parsing the DER key before every signature, as
    /// jsonwebtoken 12 does inside `encode`.
    pub aws_lc_parsed_each_time: f64,
}

/// Runs the benchmark and prints the rates, ratios and verdict.
pub fn run(options: Options) -> anyhow::Result<Rates> {
    let key = KeyPair::generate(KeyAlgorithm::Rs2562048).context("generating an RSA-2048 key")?;
    let aws_key =
        RsaKeyPair::from_der(key.private_der()).map_err(|err| anyhow::anyhow!("{err}"))?;
    let duration = Duration::from_secs(options.seconds.into());

    let mut openssl_rates = Vec::new();
    let (mut registrar_rates, mut aws_rates, mut parsed_rates) =
        (Vec::new(), Vec::new(), Vec::new());
    println!(
        "| round | openssl sign/s | registrar assertions/s | aws-lc-rs reused key sign/s | aws-lc-rs key parsed per signature sign/s |"
    );
    println!("| --- | --- | --- | --- | --- |");

    // The signers take turns, so that drift in the machine's load reaches
    // all of them alike.
    for round in 1..=options.rounds {
        let openssl = openssl_sign_rate(options.seconds)?;
        let registrar = registrar_rate(&key, duration)?;
        let aws = aws_lc_rate(&aws_key, duration)?;
        let parsed = aws_lc_parse_each_time_rate(key.private_der(), duration)?;
        let openssl_cell = openssl.map_or("absent".to_string(), |rate| format!("{rate:.0}"));
        println!("| {round} | {openssl_cell} | {registrar:.0} | {aws:.0} | {parsed:.0} |");
        parsed_rates.push(parsed);
        openssl_rates.extend(openssl);
        registrar_rates.push(registrar);
        aws_rates.push(aws);
    }

    let mean = |rates: &[f64]| rates.iter().sum::<f64>() / rates.len() as f64;
    let rates = Rates {
        registrar: mean(&registrar_rates),
        openssl: (!openssl_rates.is_empty()).then(|| mean(&openssl_rates)),
        aws_lc_reused_key: mean(&aws_rates),
        aws_lc_parsed_each_time: mean(&parsed_rates),
    };
    print_verdict(&rates);
    Ok(rates)
}

fn print_verdict(rates: &Rates) {
    let Some(openssl) = rates.openssl else {
        println!(
            "openssl is absent: no ratio; registrar {:.0}/s",
            rates.registrar
        );
        return;
    };
    let registrar = ratio(rates.registrar, openssl);
    println!(
        "registrar / openssl: {registrar:.2} (target >= 1.0: {})",
        verdict(registrar >= 1.0)
    );
    println!(
        "aws-lc-rs reused key / openssl: {:.2}",
        ratio(rates.aws_lc_reused_key, openssl)
    );
    println!(
        "aws-lc-rs key parsed per signature / openssl: {:.2}",
        ratio(rates.aws_lc_parsed_each_time, openssl)
    );
}

/// Signs client assertions with the registrar's code for `duration` and
/// returns assertions per second.
pub fn registrar_rate(key: &KeyPair, duration: Duration) -> anyhow::Result<f64> {
    measure(duration, || {
        client_assertion(
            key,
            "0oa1b2c3d4e5f6g7h8i9",
            AUDIENCE,
            Duration::from_secs(300),
        )
        .map(drop)
        .map_err(anyhow::Error::from)
    })
}

/// Signs an assertion-sized message with aws-lc-rs for `duration` and
/// returns signatures per second.
fn aws_lc_rate(key: &RsaKeyPair, duration: Duration) -> anyhow::Result<f64> {
    let rng = SystemRandom::new();
    let message = [b'a'; 400];
    let mut signature = vec![0; key.public_modulus_len()];
    measure(duration, || {
        key.sign(&RSA_PKCS1_SHA256, &rng, &message, &mut signature)
            .map_err(|err| anyhow::anyhow!("{err}"))
    })
}

/// Parses the PKCS#1 DER key and signs an assertion-sized message with
/// aws-lc-rs for `duration`, and returns signatures per second.
fn aws_lc_parse_each_time_rate(der: &[u8], duration: Duration) -> anyhow::Result<f64> {
    let rng = SystemRandom::new();
    let message = [b'a'; 400];
    measure(duration, || {
        let key = RsaKeyPair::from_der(der).map_err(|err| anyhow::anyhow!("{err}"))?;
        let mut signature = vec![0; key.public_modulus_len()];
        key.sign(&RSA_PKCS1_SHA256, &rng, &message, &mut signature)
            .map_err(|err| anyhow::anyhow!("{err}"))
    })
}

/// Calls `operation` until `duration` has passed and returns calls per
/// second.
fn measure(
    duration: Duration,
    mut operation: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut count = 0u64;
    loop {
        // Reading the clock every 16 calls keeps its cost out of the rate.
        for _ in 0..16 {
            operation()?;
        }
        count += 16;
        let elapsed = start.elapsed();
        if elapsed >= duration {
            return Ok(count as f64 / elapsed.as_secs_f64());
        }
    }
}

/// Runs `openssl speed -seconds SECONDS rsa2048` and returns its sign/s, or
/// `None` when no `openssl` binary is on the PATH.
pub fn openssl_sign_rate(seconds: u32) -> anyhow::Result<Option<f64>> {
    let output = match Command::new("openssl")
        .args(["speed", "-seconds", &seconds.to_string(), "rsa2048"])
        .output()
    {
        Ok(output) => output,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).context("running openssl speed"),
    };
    anyhow::ensure!(
        output.status.success(),
        "openssl speed failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    parse_openssl_sign_rate(&stdout)
        .map(Some)
        .with_context(|| format!("no rsa 2048 sign/s in the output of openssl speed:\n{stdout}"))
}

/// Reads sign/s from the `rsa 2048 bits` line of `openssl speed`: the
/// first number after the per-operation times, which end in `s`.
fn parse_openssl_sign_rate(output: &str) -> Option<f64> {
    let line = output
        .lines()
        .find(|line| line.starts_with("rsa") && line.contains("2048 bits"))?;
    let (_, columns) = line.split_once("bits")?;
    columns
        .split_whitespace()
        .find(|column| !column.ends_with('s'))?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openssl_3_0_output_parses() {
        let output = "version: 3.0.19\n                  sign    verify    sign/s verify/s\nrsa 2048 bits 0.000851s 0.000025s   1175.1  39622.2\n";
        assert_eq!(parse_openssl_sign_rate(output), Some(1175.1));
    }

    #[test]
    fn openssl_output_without_rsa_line_fails() {
        assert_eq!(parse_openssl_sign_rate("version: 3.0.19\n"), None);
    }
}
