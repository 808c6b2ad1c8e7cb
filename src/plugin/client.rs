//! Connecting as kubectl does: `--kubeconfig`, `--context`, `--cluster`, `--user` and `-n`,
//! and API errors worded as kubectl words them.

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use super::ConnectionArgs;
use crate::api::SyncSequence;

/// The SyncSequences of the namespace the flags (or the kubeconfig context) select.
pub async fn sequences(args: &ConnectionArgs) -> anyhow::Result<Api<SyncSequence>> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        cluster: args.cluster.clone(),
        user: args.user.clone(),
    };
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|e| anyhow::anyhow!("cannot read kubeconfig {}: {e}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &options).await?
        }
        None if options.context.is_some()
            || options.cluster.is_some()
            || options.user.is_some() =>
        {
            Config::from_kubeconfig(&options).await?
        }
        // $KUBECONFIG or ~/.kube/config, else the in-cluster service account.
        None => Config::infer().await?,
    };
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config)?;
    Ok(Api::namespaced(client, &namespace))
}

/// An API error as kubectl prints it (`syncsequences.syncseq.dev "x" not found`); other errors
/// keep their chain.
pub fn api_error(e: kube::Error) -> anyhow::Error {
    match e {
        kube::Error::Api(status) if !status.message.is_empty() => anyhow::anyhow!(status.message),
        e => anyhow::Error::from(e),
    }
}
