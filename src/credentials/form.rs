//! What a token request carries to authenticate the client: the form, the `Basic`
//! header, and the forms of the secret a server could echo back.

use http::HeaderValue;
use percent_encoding::utf8_percent_encode;
use zeroize::Zeroizing;

use super::basic;
use crate::{redact::Redactor, token::Scope, AuthMethod, ClientCredentials};

/// The `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2).
const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

impl ClientCredentials {
    /// The form body of a token request for `scope`, authenticated with `assertion`
    /// when there is one (RFC 7523 §2.2).
    pub(crate) fn form_body(
        &self,
        scope: Option<&Scope>,
        assertion: Option<&str>,
    ) -> Zeroizing<String> {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        if let Some(scope) = scope {
            form.append_pair("scope", scope.as_str());
        }
        if self.auth_method == AuthMethod::ClientSecretPost {
            form.append_pair("client_id", &self.client_id);
            form.append_pair("client_secret", self.client_secret.secret());
        } else if self.auth_method.is_tls() {
            // RFC 8705 §2: the certificate authenticates; the id says whose it is.
            form.append_pair("client_id", &self.client_id);
        }
        if let Some(assertion) = assertion {
            form.append_pair("client_id", &self.client_id);
            form.append_pair("client_assertion_type", CLIENT_ASSERTION_TYPE);
            form.append_pair("client_assertion", assertion);
        }
        for (name, value) in &self.params {
            form.append_pair(name, value);
        }
        Zeroizing::new(form.finish())
    }

    /// The secret as a token endpoint could echo it back in an error text: as it is,
    /// form-encoded (the body), percent-encoded and inside the base64 of the `Basic`
    /// value (the header). Forms shorter than four characters are left out: redacting
    /// them would redact ordinary words.
    pub(crate) fn secret_forms(&self) -> Vec<Zeroizing<String>> {
        let secret = self.client_secret.secret();
        let mut forms = vec![
            Zeroizing::new(secret.to_owned()),
            Zeroizing::new(form_urlencoded::byte_serialize(secret.as_bytes()).collect()),
            Zeroizing::new(utf8_percent_encode(secret, basic::BASIC_ESCAPE).to_string()),
        ];
        if let Some(basic) = self.basic_authorization() {
            if let Some(encoded) = basic.to_str().ok().and_then(|v| v.strip_prefix("Basic ")) {
                forms.push(Zeroizing::new(encoded.to_owned()));
            }
        }
        forms.retain(|f| f.len() >= 4);
        forms
    }

    /// The redactor for what a token endpoint, or a client sending to it, says: it knows
    /// the secret, and the forms it was sent in.
    pub(crate) fn redactor(&self) -> Redactor {
        let mut redactor = Redactor::new().with_secret(self.client_secret.secret());
        for form in self.secret_forms() {
            redactor.add_form(&form);
        }
        redactor
    }

    /// The `Authorization: Basic` value, for [`AuthMethod::ClientSecretBasic`].
    pub(crate) fn basic_authorization(&self) -> Option<HeaderValue> {
        if self.auth_method != AuthMethod::ClientSecretBasic {
            return None;
        }
        Some(basic::authorization(
            &self.client_id,
            self.client_secret.secret(),
        ))
    }
}
