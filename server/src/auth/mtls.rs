//! The caller id of a client certificate that the TLS layer has verified.

use x509_cert::Certificate;
use x509_cert::der::oid::AssociatedOid;
use x509_cert::der::oid::db::rfc4519::COMMON_NAME;
use x509_cert::der::{Decode, Tag, Tagged};
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

use super::AuthError;

/// The maximum length of a caller id taken from a certificate, in bytes.
const MAX_ID_LENGTH: usize = 512;

/// Returns the caller id of a DER client certificate: its first
/// `spiffe://` URI SAN, or else its subject CN.
///
/// The certificate must have been verified already: this function reads
/// names, it checks no signature.
pub fn caller_id_from_certificate(der: &[u8]) -> Result<String, AuthError> {
    let certificate =
        Certificate::from_der(der).map_err(|_| AuthError::CertificateWithoutIdentity)?;
    spiffe_id(&certificate)
        .or_else(|| common_name(&certificate))
        .filter(|id| usable(id))
        .ok_or(AuthError::CertificateWithoutIdentity)
}

fn spiffe_id(certificate: &Certificate) -> Option<String> {
    let extensions = certificate.tbs_certificate.extensions.as_ref()?;
    let extension = extensions
        .iter()
        .find(|extension| extension.extn_id == SubjectAltName::OID)?;
    let names = SubjectAltName::from_der(extension.extn_value.as_bytes()).ok()?;
    names.0.iter().find_map(|name| match name {
        GeneralName::UniformResourceIdentifier(uri) if uri.as_str().starts_with("spiffe://") => {
            Some(uri.as_str().to_string())
        }
        _ => None,
    })
}

fn common_name(certificate: &Certificate) -> Option<String> {
    certificate
        .tbs_certificate
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find(|attribute| attribute.oid == COMMON_NAME)
        .and_then(|attribute| match attribute.value.tag() {
            Tag::Utf8String | Tag::PrintableString | Tag::Ia5String => {
                std::str::from_utf8(attribute.value.value()).ok()
            }
            _ => None,
        })
        .map(str::to_string)
}

/// Rejects ids that would be unsafe in logs or a policy file: empty, very
/// long, or with control characters.
fn usable(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LENGTH && !id.chars().any(char::is_control)
}
