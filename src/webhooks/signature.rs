//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>): a secret written
//! `whsec_<base64>`, and per message `webhook-signature: v1,<base64 of HMAC-SHA256 over
//! "<webhook-id>.<webhook-timestamp>.<body>">`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::hmac;

/// The prefix of a Standard Webhooks secret.
const SECRET_PREFIX: &str = "whsec_";

/// A signing secret, decoded.
#[derive(Clone)]
pub(crate) struct Secret(hmac::Key);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// Reads a secret as Standard Webhooks writes it: `whsec_` then base64 of 24 to 64 bytes.
    pub(crate) fn parse(text: &str) -> Result<Secret, String> {
        let Some(encoded) = text.trim().strip_prefix(SECRET_PREFIX) else {
            return Err(format!(
                "a webhook secret starts with {SECRET_PREFIX} (then base64 of 24 to 64 random \
                 bytes)"
            ));
        };
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|e| format!("the part after {SECRET_PREFIX} is not base64: {e}"))?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(format!(
                "the secret holds {} bytes; Standard Webhooks secrets hold 24 to 64",
                bytes.len()
            ));
        }
        Ok(Secret(hmac::Key::new(hmac::HMAC_SHA256, &bytes)))
    }

    /// The `webhook-signature` header of a message.
    pub(crate) fn sign(&self, id: &str, timestamp: u64, body: &str) -> String {
        let mut context = hmac::Context::with_key(&self.0);
        context.update(id.as_bytes());
        context.update(b".");
        context.update(timestamp.to_string().as_bytes());
        context.update(b".");
        context.update(body.as_bytes());
        format!("v1,{}", STANDARD.encode(context.sign().as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification's reference libraries.
    #[test]
    fn signs_as_the_reference_libraries_do() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("a secret");
        let signature = secret.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_secret_without_its_prefix_or_too_short_is_refused() {
        assert!(Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(Secret::parse("whsec_c2hvcnQ=").is_err());
        assert!(Secret::parse("whsec_not base64!").is_err());
    }
}
