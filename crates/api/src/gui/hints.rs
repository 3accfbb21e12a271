//! What to do about an error, in words: the console shows each failure with the message as the
//! backend, Vault or global said it, and beneath it the fix an operator would otherwise look up.
//! Matching is on the stable parts of our own messages (`ca::vault::error`, the zone-token checks).

/// The fix for a CA backend's validation or issuance failure (or warning), when one is known.
pub fn backend_fix(message: &str) -> Option<String> {
    let m = message.to_ascii_lowercase();
    let fix = if m.contains("without a keyusage extension") {
        "on the Vault role, write key_usage=\"DigitalSignature,KeyAgreement,KeyEncipherment\" \
         (without the KeyUsage prefix); certificates issued after that carry the extension"
    } else if m.contains("has no role") {
        "create the role in the PKI mount (vault write <pki>/roles/<role> …, as Kong Mesh's Vault \
         page step 2) or correct conf.fromCp.role"
    } else if m.contains("has no pki mount") {
        "enable the PKI secrets engine at that path (vault secrets enable -path=<pki> pki) or \
         correct conf.fromCp.pki and conf.fromCp.namespace"
    } else if m.contains("rejected the token") {
        "the Vault token is expired or revoked: create a new one with the policy for \
         <pki>/issue/<role> and update the Secret its auth.token names (meshctl apply -f \
         secret.yaml)"
    } else if m.contains("denied") {
        "check that conf.fromCp.pki and conf.fromCp.role name the mount and role you created \
         (Vault denies a path no policy grants, a misspelt role's included), and that the token's \
         policy grants create and update on <pki>/issue/<role> (<pki>/sign/<role> with \
         fromCp.csr)"
    } else if m.contains("is sealed") {
        "unseal Vault (vault operator unseal); issuance resumes by itself, and dataplanes keep \
         their certificates meanwhile"
    } else if m.contains("could not reach") || m.contains("did not answer in time") {
        "check that conf.fromCp.address is reachable from this control plane (DNS, firewall, \
         port) and that Vault is running"
    } else if m.contains("not trusted") {
        "give the CA that signed Vault's certificate as conf.fromCp.tls.caCert, or set \
         tls.serverName to a name its certificate holds"
    } else if m.contains("serves https but the address says http://") {
        "write the address with https://"
    } else if m.contains("namespace") && m.contains("not found") {
        "correct conf.fromCp.namespace (Vault Enterprise namespaces; OpenBao has none by default)"
    } else if m.contains("refused the common name") {
        "allow the name in the role (allowed_domains, allow_subdomains) or change \
         conf.fromCp.commonName"
    } else if m.contains("refused the uri sans") {
        "allow spiffe://<mesh>/* and kuma://* in the role's allowed_uri_sans"
    } else if m.contains("rate limiting") {
        "raise Vault's rate limit quota for this path; the zone backs off and retries meanwhile"
    } else if m.contains("secret") && m.contains("not found") {
        "create the Secret the backend names in this mesh (meshctl apply -f secret.yaml)"
    } else {
        return None;
    };
    Some(fix.to_string())
}

/// The fix for a zone stream global refused, or a zone's link error.
pub fn zone_fix(zone: &str, message: &str) -> Option<String> {
    let m = message.to_ascii_lowercase();
    let new_token = format!(
        "generate a new token at global (meshctl generate zone-token --zone {zone} --valid-for \
         720h > {zone}.token) and replace the zone's --zone-token-file with it; the zone re-reads \
         the file on its next reconnect"
    );
    let fix = if m.contains("token was revoked") || m.contains("token has expired") {
        new_token
    } else if m.contains("token is for zone") {
        format!(
            "the zone runs with another zone's token: give it a token generated for zone {zone}, \
             or start it with the --zone the token names"
        )
    } else if m.contains("zone token is required") {
        format!(
            "start the zone with --zone-token-file naming a token from meshctl generate zone-token --zone {zone}"
        )
    } else if m.contains("zone token refused") || m.contains("signature") {
        new_token
    } else if m.contains("disabled at global") {
        format!("enable the Zone at global (set enabled: true on Zone {zone}) if it should sync")
    } else if m.contains("deleted at global") {
        "the Zone was deleted at global: the zone's next connection creates it again; stop the \
         zone if it was retired"
            .to_string()
    } else if m.contains("could not connect") || m.contains("unavailable") {
        "check that --global-address is reachable from the zone and that global runs; the zone \
         keeps serving its dataplanes and reconnects by itself"
            .to_string()
    } else if m.contains("certificate") || m.contains("tls") {
        "give the zone the CA that signed global's sync certificate as --kds-ca-file (global \
         writes kds-ca.pem to its --work-dir when it generated one)"
            .to_string()
    } else {
        return None;
    };
    Some(fix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_backend_failures_have_fixes() {
        let cases = [
            (
                "Vault at http://v:8200 issued the test certificate without a KeyUsage extension. …",
                "key_usage=\"DigitalSignature",
            ),
            (
                "Vault at http://v:8200 has no role \"x\" in mount \"pki\": unknown role",
                "create the role",
            ),
            ("Vault at http://v:8200 is sealed", "unseal"),
            (
                "could not reach Vault at http://v:8200: connection refused",
                "reachable",
            ),
            (
                "Vault at https://v presented a certificate that is not trusted: UnknownIssuer",
                "caCert",
            ),
            (
                "Vault at http://v:8200 rejected the token: permission denied",
                "new one",
            ),
        ];
        for (msg, want) in cases {
            let fix = backend_fix(msg).unwrap_or_default();
            assert!(fix.contains(want), "{msg} -> {fix}");
        }
        assert_eq!(backend_fix("something nobody anticipated"), None);
    }

    #[test]
    fn zone_refusals_have_fixes() {
        let revoked = zone_fix("east", "zone token refused: token was revoked").unwrap_or_default();
        assert!(
            revoked.contains("meshctl generate zone-token --zone east"),
            "{revoked}"
        );
        let other =
            zone_fix("east", "zone token is for zone \"west\", not \"east\"").unwrap_or_default();
        assert!(other.contains("another zone's token"), "{other}");
        let disabled = zone_fix("east", "zone \"east\" is disabled at global").unwrap_or_default();
        assert!(disabled.contains("enabled: true"), "{disabled}");
        assert_eq!(zone_fix("east", "the weather"), None);
    }
}
