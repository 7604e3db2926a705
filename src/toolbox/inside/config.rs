//! The image configured for the host's services: the host's extra CA
//! certificates trusted, Kerberos through the host's KCM, and RPM kept off
//! the host's mounts.

use std::path::Path;

use super::host::resolve_under;
use super::{say, WARNING_PREFIX};
use crate::fsutil::write_atomic;

/// System CA bundles, where each distribution family keeps the one file
/// TLS clients (apt's GnuTLS, dnf's libcurl, OpenSSL) read: Debian, Ubuntu
/// and Alpine; Fedora, RHEL and Arch (p11-kit's extract); openSUSE.
const CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/var/lib/ca-certificates/ca-bundle.pem",
];

const CA_BEGIN: &str = "# mtbx: certificates the host trusts and this image lacks (rewritten at every start)";
const CA_END: &str = "# mtbx: end";

/// The host's CA trust inside: certificates in the host's bundle that the
/// image's bundle lacks (a corporate or proxy CA the host added) are
/// appended to the image's bundle, in a marked section rewritten at every
/// start, so apt and dnf inside reach what the host reaches. The file is
/// written, not bind-mounted: the image's ca-certificates package must
/// stay able to replace it (an update drops the section until the next
/// start). Toolbx instead starts a p11-kit server on the host, which only
/// clients that read trust through p11-kit see.
pub(super) fn trust_host_cas(root: &Path) {
    let host = root.join("run/host");
    let Some(host_text) = CA_BUNDLES.iter().find_map(|b| {
        resolve_under(&host, Path::new(b))
            .and_then(|p| std::fs::read_to_string(host.join(p.strip_prefix("/").ok()?)).ok())
    }) else {
        return;
    };
    for b in CA_BUNDLES {
        let bundle = root.join(b.trim_start_matches('/'));
        if bundle.is_symlink() || !bundle.is_file() {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&bundle) else { continue };
        if let Some(merged) = merge_cas(&text, &host_text) {
            if let Err(e) =
                crate::userdb::write(&bundle, merged.as_bytes(), crate::userdb::Kept::of_path(&bundle))
            {
                say(WARNING_PREFIX, &format!("cannot add the host's CA certificates to {b}: {e}"));
            }
        }
    }
}

/// `image` without a previous mtbx section, plus a section of the PEM
/// certificates of `host` it lacks; None when that changes nothing.
fn merge_cas(image: &str, host: &str) -> Option<String> {
    let own = match (image.find(CA_BEGIN), image.find(CA_END)) {
        (Some(b), Some(e)) if e > b => {
            let end = image[e..].find('\n').map_or(image.len(), |n| e + n + 1);
            format!("{}{}", image[..b].trim_end_matches('\n'), &image[end..]).trim_end().to_string() + "\n"
        }
        _ => image.to_string(),
    };
    let known: std::collections::HashSet<String> = pem_certificates(&own).map(|(_, body)| body).collect();
    let missing: Vec<&str> =
        pem_certificates(host).filter(|(_, body)| !known.contains(body)).map(|(pem, _)| pem).collect();
    let mut out = own;
    if !missing.is_empty() {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(CA_BEGIN);
        out.push('\n');
        for pem in missing {
            out.push_str(pem);
            out.push('\n');
        }
        out.push_str(CA_END);
        out.push('\n');
    }
    (out != image).then_some(out)
}

/// Each PEM certificate of a bundle: its text, and its base64 body with
/// the whitespace removed, which identifies it whatever the line breaks.
fn pem_certificates(text: &str) -> impl Iterator<Item = (&str, String)> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut rest = text;
    std::iter::from_fn(move || {
        let b = rest.find(BEGIN)?;
        let e = rest[b..].find(END)? + b + END.len();
        let pem = &rest[b..e];
        rest = &rest[e..];
        let body = pem[BEGIN.len()..pem.len() - END.len()].split_whitespace().collect();
        Some((pem, body))
    })
}

/// Kerberos through the host's KCM (sssd-kcm's socket is mounted at
/// create) where the image has krb5's drop-in directory, and RPM told not
/// to touch what is bind-mounted from the host, as Toolbx configures them.
pub(super) fn configure_kerberos_and_rpm(root: &Path) {
    let krb = root.join("etc/krb5.conf.d");
    if krb.is_dir() && !krb.join("kcm_default_ccache").exists() {
        // Toolbx's very file: an image or a tool that recognises it (or a
        // container that moves between Toolbx and mtbx) sees the same.
        let text = "# Written by Toolbx\n# https://containertoolbx.org/\n#\n\
                    # # To disable the KCM credential cache, comment out the following lines.\n\n\
                    [libdefaults]\n    default_ccache_name = KCM:\n";
        if let Err(e) = write_atomic(&krb.join("kcm_default_ccache"), text.as_bytes(), 0o644) {
            say(WARNING_PREFIX, &format!("cannot configure Kerberos: {e}"));
        }
    }
    let rpm = root.join("usr/lib/rpm/macros.d");
    if rpm.is_dir() {
        let text = "# Written by Toolbx\n# https://containertoolbx.org/\n\n\
                    %_netsharedpath /dev:/media:/mnt:/proc:/sys:/tmp:/var/lib/flatpak:/var/lib/libvirt\n";
        if let Err(e) = write_atomic(&rpm.join("macros.toolbox"), text.as_bytes(), 0o644) {
            say(WARNING_PREFIX, &format!("cannot configure RPM: {e}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kerberos_uses_kcm_and_rpm_leaves_the_hosts_mounts_alone() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        configure_kerberos_and_rpm(r);
        assert!(!r.join("etc/krb5.conf.d").exists(), "nothing where the image lacks the tools");
        std::fs::create_dir_all(r.join("etc/krb5.conf.d")).unwrap();
        std::fs::create_dir_all(r.join("usr/lib/rpm/macros.d")).unwrap();
        configure_kerberos_and_rpm(r);
        let kcm = std::fs::read_to_string(r.join("etc/krb5.conf.d/kcm_default_ccache")).unwrap();
        assert!(kcm.contains("[libdefaults]\n    default_ccache_name = KCM:\n"), "{kcm}");
        assert!(
            kcm.starts_with("# Written by Toolbx\n# https://containertoolbx.org/\n#\n"),
            "Toolbx's file: {kcm}"
        );
        let rpm = std::fs::read_to_string(r.join("usr/lib/rpm/macros.d/macros.toolbox")).unwrap();
        assert!(
            rpm.contains(
                "%_netsharedpath /dev:/media:/mnt:/proc:/sys:/tmp:/var/lib/flatpak:/var/lib/libvirt\n"
            ),
            "{rpm}"
        );
        // An administrator's own KCM file is kept.
        std::fs::write(r.join("etc/krb5.conf.d/kcm_default_ccache"), "# mine\n").unwrap();
        configure_kerberos_and_rpm(r);
        assert_eq!(
            std::fs::read_to_string(r.join("etc/krb5.conf.d/kcm_default_ccache")).unwrap(),
            "# mine\n"
        );
    }

    #[test]
    fn the_hosts_extra_cas_are_added_once_and_follow_the_host() {
        let pem = |b: &str| format!("-----BEGIN CERTIFICATE-----\n{b}\n-----END CERTIFICATE-----");
        let image = format!("# Mozilla\n{}\n{}\n", pem("AAAA\nBBBB"), pem("CCCC"));
        let host = format!("{}\n{}\n", pem("AAAABBBB"), pem("CORP"));
        let merged = merge_cas(&image, &host).unwrap();
        assert_eq!(
            merged,
            format!("{image}{CA_BEGIN}\n{}\n{CA_END}\n", pem("CORP")),
            "only what the image lacks"
        );
        assert_eq!(merge_cas(&merged, &host), None, "a second start changes nothing");
        let host2 = format!("{}\n{}\n", pem("CORP2"), pem("CCCC"));
        assert_eq!(
            merge_cas(&merged, &host2).unwrap(),
            format!("{image}{CA_BEGIN}\n{}\n{CA_END}\n", pem("CORP2"))
        );
        assert_eq!(
            merge_cas(&merged, &image).unwrap(),
            image,
            "the host dropped its CA: so does the container"
        );

        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("etc/ssl/certs")).unwrap();
        std::fs::create_dir_all(r.join("run/host/etc/pki/ca-trust/extracted/pem")).unwrap();
        std::fs::write(r.join("etc/ssl/certs/ca-certificates.crt"), &image).unwrap();
        std::fs::write(r.join("run/host/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem"), &host).unwrap();
        trust_host_cas(r);
        let got = std::fs::read_to_string(r.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
        assert!(
            got.contains("CORP") && got.starts_with(&image),
            "a Fedora host's bundle into a Debian image: {got}"
        );
    }
}
