//! Connecting as kubectl does: `--kubeconfig`, `--context`, `--cluster`, `--user` and `-n`,
//! and API errors worded as kubectl words them.

use kube::api::{Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use super::ConnectionArgs;
use super::target::{Kind, Runnable, Target};
use crate::api::{Readable, Sync, SyncSequence};

/// Field manager of the plugin's patches, as `managedFields` shows it.
const FIELD_MANAGER: &str = "kubectl-syncseq";

/// A connection and the namespace the flags (or the kubeconfig context) select.
#[derive(Clone)]
pub(crate) struct Cluster {
    pub client: Client,
    pub namespace: String,
}

impl Cluster {
    pub(crate) fn sequences(&self) -> Api<SyncSequence> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub(crate) fn syncs(&self) -> Api<Sync> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Reads the target.
    pub(crate) async fn get(&self, target: &Target) -> anyhow::Result<Runnable> {
        match target.kind {
            Kind::SyncSequence => Ok((&self
                .sequences()
                .get(&target.name)
                .await
                .map_err(api_error)?)
                .into()),
            Kind::Sync => Ok((&self.syncs().get(&target.name).await.map_err(api_error)?).into()),
        }
    }

    /// A JSON merge patch of the target, as the plugin's field manager.
    pub(crate) async fn merge_patch(
        &self,
        target: &Target,
        patch: serde_json::Value,
    ) -> anyhow::Result<Runnable> {
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        let patch = Patch::Merge(&patch);
        match target.kind {
            Kind::SyncSequence => Ok((&self
                .sequences()
                .patch(&target.name, &params, &patch)
                .await
                .map_err(api_error)?)
                .into()),
            Kind::Sync => Ok((&self
                .syncs()
                .patch(&target.name, &params, &patch)
                .await
                .map_err(api_error)?)
                .into()),
        }
    }

    /// Watches the target and hands each version to `step` until it returns a value.
    pub(crate) async fn watch<T>(
        &self,
        target: &Target,
        mut step: impl FnMut(&Runnable) -> Option<T>,
    ) -> anyhow::Result<T> {
        let what = target.reference();
        match target.kind {
            Kind::SyncSequence => {
                super::wait::watch(self.sequences(), &target.name, &what, |o| step(&o.into())).await
            }
            Kind::Sync => {
                super::wait::watch(self.syncs(), &target.name, &what, |o| step(&o.into())).await
            }
        }
    }
}

impl Cluster {
    fn scoped<K>(&self, all_namespaces: bool) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        if all_namespaces {
            Api::all(self.client.clone())
        } else {
            Api::namespaced(self.client.clone(), &self.namespace)
        }
    }

    /// Every SyncSequence and Sync of the namespace (or of all), by namespace, kind and name.
    pub(crate) async fn list_all(&self, all_namespaces: bool) -> anyhow::Result<Vec<Runnable>> {
        let lp = kube::api::ListParams::default();
        let sequences = self
            .scoped::<Readable<SyncSequence>>(all_namespaces)
            .list(&lp)
            .await
            .map_err(api_error)?;
        let syncs = self
            .scoped::<Readable<Sync>>(all_namespaces)
            .list(&lp)
            .await
            .map_err(api_error)?;
        let mut all: Vec<Runnable> = sequences.iter().map(Runnable::from).collect();
        all.extend(syncs.iter().map(Runnable::from));
        all.sort_by(|a, b| {
            (&a.namespace, a.target.kind, &a.target.name).cmp(&(
                &b.namespace,
                b.target.kind,
                &b.target.name,
            ))
        });
        Ok(all)
    }

    /// Watches every SyncSequence and Sync of the namespace (or of all) and hands each version
    /// to `seen`, until the watches keep failing.
    pub(crate) async fn watch_all(
        &self,
        all_namespaces: bool,
        mut seen: impl FnMut(&Runnable),
    ) -> anyhow::Result<()> {
        use futures::StreamExt;
        use kube::runtime::{WatchStreamExt, watcher};
        let config = watcher::Config::default();
        let sequences = watcher(
            self.scoped::<Readable<SyncSequence>>(all_namespaces),
            config.clone(),
        )
        .default_backoff()
        .applied_objects()
        .map(|r| r.map(|o| Runnable::from(&o)));
        let syncs = watcher(self.scoped::<Readable<Sync>>(all_namespaces), config)
            .default_backoff()
            .applied_objects()
            .map(|r| r.map(|o| Runnable::from(&o)));
        let mut both = futures::stream::select(sequences.boxed(), syncs.boxed());
        let mut failures = 0;
        while let Some(event) = both.next().await {
            match event {
                Ok(obj) => {
                    failures = 0;
                    seen(&obj);
                }
                Err(e) => {
                    failures += 1;
                    if failures >= 5 {
                        return Err(
                            anyhow::Error::from(e).context("watching SyncSequences and Syncs")
                        );
                    }
                }
            }
        }
        anyhow::bail!("the watch ended")
    }
}

/// Connects as kubectl would with the same flags.
pub(crate) async fn connect(args: &ConnectionArgs) -> anyhow::Result<Cluster> {
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
    Ok(Cluster { client, namespace })
}

/// An API error as kubectl prints it (`syncsequences.syncseq.dev "x" not found`); other errors
/// keep their chain.
pub(crate) fn api_error(e: kube::Error) -> anyhow::Error {
    match e {
        kube::Error::Api(status) if !status.message.is_empty() => anyhow::anyhow!(status.message),
        e => anyhow::Error::from(e),
    }
}
