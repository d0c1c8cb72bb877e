//! TLS for `wss://` and HTTPS: loading the PEM certificate chain and key into a rustls acceptor
//! whose certificate can be replaced while running (SIGHUP, or a changed file), without
//! touching open connections.

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::config::types::TlsConfig;

/// Reads and checks the certificate chain and key; the error says which file is wrong and why.
fn load(cfg: &TlsConfig) -> Result<CertifiedKey, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cfg.cert)
        .map_err(|e| format!("cannot read certificate {}: {e}", cfg.cert))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("invalid certificate {}: {e}", cfg.cert))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", cfg.cert));
    }
    let key = PrivateKeyDer::from_pem_file(&cfg.key)
        .map_err(|e| format!("cannot read private key {}: {e}", cfg.key))?;
    CertifiedKey::from_der(certs, key, &rustls::crypto::ring::default_provider())
        .map_err(|e| format!("certificate and key do not fit: {e}"))
}

/// The files' modification times, to notice a renewal.
fn mtimes(cfg: &TlsConfig) -> (Option<SystemTime>, Option<SystemTime>) {
    let m = |p: &str| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (m(&cfg.cert), m(&cfg.key))
}

/// The certificate new handshakes get; replaced by [`Certificates::reload`].
#[derive(Debug)]
pub struct Certificates {
    cfg: TlsConfig,
    current: RwLock<Arc<CertifiedKey>>,
    /// Modification times of the files last loaded (or last found unloadable).
    seen: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

impl Certificates {
    /// Loads the files again. On any problem the current certificate stays and the error says
    /// why; open connections are never touched.
    pub fn reload(&self) -> Result<(), String> {
        let seen = mtimes(&self.cfg);
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = seen;
        let key = load(&self.cfg)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
        Ok(())
    }

    /// Reloads when either file's modification time changed since the last attempt (a
    /// certbot-style renewal); `None` when nothing changed.
    pub fn reload_if_changed(&self) -> Option<Result<(), String>> {
        let now = mtimes(&self.cfg);
        let before = *self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        (now != before).then(|| self.reload())
    }

    /// How often the files are checked for changes (`None`: never).
    pub fn watch_every(&self) -> Option<std::time::Duration> {
        (self.cfg.watch_seconds > 0).then(|| std::time::Duration::from_secs(self.cfg.watch_seconds))
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// Builds the acceptor and the handle that replaces its certificate.
pub fn acceptor(cfg: &TlsConfig) -> Result<(TlsAcceptor, Arc<Certificates>), String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let seen = mtimes(cfg);
    let certs = Arc::new(Certificates {
        current: RwLock::new(Arc::new(load(cfg)?)),
        cfg: cfg.clone(),
        seen: Mutex::new(seen),
    });
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(certs.clone());
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((TlsAcceptor::from(Arc::new(config)), certs))
}

/// Checks the files every `watch_every` until shutdown and reloads them when they changed.
pub async fn watch(certs: Arc<Certificates>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let Some(every) = certs.watch_every() else {
        return;
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = crate::state::shutdown_started(&mut shutdown) => return,
        }
        match certs.reload_if_changed() {
            Some(Ok(())) => tracing::info!("TLS certificate reloaded (the files changed)"),
            Some(Err(e)) => {
                tracing::error!(error = %e, "TLS certificate reload refused: the previous certificate stays")
            }
            None => {}
        }
    }
}
