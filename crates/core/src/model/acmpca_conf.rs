//! The `acmpca` backend's `conf` (AWS Private CA, as Kong Mesh documents it): the CA's ARN, the
//! `commonName` template, an optional `caCert` to trust, optional static credentials, and an
//! endpoint override; with its decoder and the ARN grammar.

use serde::Serialize;
use serde_json::Value;

use crate::{
    decode::Decoder, model::datasource::DataSource, template::CnTemplate, validation::FieldPath,
};

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AcmPcaConf {
    pub arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub common_name: Option<CnTemplate>,
    /// The root dataplanes trust; when absent, GetCertificateAuthorityCertificate's answer is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<DataSource>,
    /// Absent: the AWS SDK's default credential chain (env, profile, web identity, ECS, IMDS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<AcmPcaAuth>,
    /// Overrides the regional endpoint (a VPC endpoint, or a test server).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AcmPcaAuth {
    pub aws_credentials: AwsCredentials,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AwsCredentials {
    pub access_key: DataSource,
    pub access_key_secret: DataSource,
}

/// The parts of a Private CA ARN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PcaArn<'a> {
    pub partition: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    pub id: &'a str,
}

/// Parses `arn:<partition>:acm-pca:<region>:<12-digit account>:certificate-authority/<id>`, the
/// only resource form IssueCertificate accepts. The reason says which part is wrong.
pub fn parse_pca_arn(s: &str) -> Result<PcaArn<'_>, String> {
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    let [arn, partition, service, region, account, resource] = parts.as_slice() else {
        return Err(format!(
            "{s:?} is not an ARN of the form arn:aws:acm-pca:<region>:<account>:certificate-authority/<id>"
        ));
    };
    if *arn != "arn" {
        return Err(format!("{s:?} does not start with \"arn:\""));
    }
    if !["aws", "aws-cn", "aws-us-gov"].contains(partition) {
        return Err(format!(
            "partition {partition:?} must be one of aws, aws-cn, aws-us-gov"
        ));
    }
    if *service != "acm-pca" {
        return Err(format!(
            "service {service:?} must be acm-pca (this is not a Private CA's ARN)"
        ));
    }
    let region_ok = !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && region.contains('-');
    if !region_ok {
        return Err(format!(
            "region {region:?} must be an AWS region such as us-east-1"
        ));
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("account {account:?} must be 12 digits"));
    }
    let id = resource
        .strip_prefix("certificate-authority/")
        .ok_or_else(|| format!("resource {resource:?} must be certificate-authority/<id>"))?;
    let id_ok = !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !id_ok {
        return Err(format!(
            "certificate authority id {id:?} must be letters, digits and '-' (a UUID)"
        ));
    }
    Ok(PcaArn {
        partition,
        region,
        account,
        id,
    })
}

impl AcmPcaConf {
    /// The region named in the ARN; the SDK client is bound to it.
    pub fn region(&self) -> Option<&str> {
        parse_pca_arn(&self.arn).ok().map(|a| a.region)
    }

    /// Every DataSource with its field path relative to `conf`.
    pub fn data_sources(&self) -> Vec<(String, &DataSource)> {
        let mut out = Vec::new();
        if let Some(ca) = &self.ca_cert {
            out.push(("caCert".into(), ca));
        }
        if let Some(a) = &self.auth {
            out.push((
                "auth.awsCredentials.accessKey".into(),
                &a.aws_credentials.access_key,
            ));
            out.push((
                "auth.awsCredentials.accessKeySecret".into(),
                &a.aws_credentials.access_key_secret,
            ));
        }
        out
    }

    pub(super) fn decode(d: &mut Decoder, v: &Value, path: &FieldPath) -> Option<Self> {
        let mut o = d.object(v, path)?;
        let arn = o.req_string(d, "arn").filter(|a| match parse_pca_arn(a) {
            Ok(_) => true,
            Err(reason) => {
                d.violation(&path.field("arn"), reason);
                false
            }
        });
        let common_name = o.opt_with(d, "commonName", |d, v, p| {
            let s = d.string(v, p)?;
            CnTemplate::parse(&s)
                .map_err(|e| d.violation(p, e.to_string()))
                .ok()
        });
        let ca_cert = o.opt_with(d, "caCert", DataSource::decode);
        let auth = o.opt_with(d, "auth", |d, v, p| {
            let mut o = d.object(v, p)?;
            let creds = o.req_with(d, "awsCredentials", |d, v, p| {
                let mut o = d.object(v, p)?;
                let access_key = o.req_with(d, "accessKey", DataSource::decode);
                let access_key_secret = o.req_with(d, "accessKeySecret", DataSource::decode);
                o.finish(d);
                Some(AwsCredentials {
                    access_key: access_key?,
                    access_key_secret: access_key_secret?,
                })
            });
            o.finish(d);
            Some(AcmPcaAuth {
                aws_credentials: creds?,
            })
        });
        let endpoint = o
            .opt_with(d, "endpoint", super::ca_conf::decode_url)
            .filter(|e| {
                if e.is_empty() {
                    d.violation(&path.field("endpoint"), "must not be empty");
                }
                !e.is_empty()
            });
        o.finish(d);
        Some(Self {
            arn: arn?,
            common_name,
            ca_cert,
            auth,
            endpoint,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_of_every_partition_parse() {
        let a = parse_pca_arn(
            "arn:aws:acm-pca:eu-west-1:123456789012:certificate-authority/0f1e2d3c-aaaa-bbbb-cccc-1234567890ab",
        )
        .expect("valid");
        assert_eq!(a.region, "eu-west-1");
        assert_eq!(a.account, "123456789012");
        for p in ["aws-cn", "aws-us-gov"] {
            let s = format!("arn:{p}:acm-pca:cn-north-1:123456789012:certificate-authority/x-1");
            assert_eq!(parse_pca_arn(&s).expect("valid").partition, p);
        }
    }

    #[test]
    fn malformed_arns_say_which_part_is_wrong() {
        let cases = [
            ("not-an-arn", "is not an ARN"),
            (
                "arn:aws:acm:us-east-1:123456789012:certificate-authority/x",
                "service \"acm\"",
            ),
            (
                "arn:aws:acm-pca:us-east-1:1234:certificate-authority/x",
                "account \"1234\"",
            ),
            (
                "arn:aws:acm-pca:us-east-1:123456789012:certificate/x",
                "resource",
            ),
            (
                "arn:azure:acm-pca:us-east-1:123456789012:certificate-authority/x",
                "partition",
            ),
            (
                "arn:aws:acm-pca:US_EAST:123456789012:certificate-authority/x",
                "region",
            ),
            (
                "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/",
                "id",
            ),
            (
                "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/a/certificate/b",
                "id",
            ),
        ];
        for (arn, want) in cases {
            let e = parse_pca_arn(arn).expect_err(arn);
            assert!(e.contains(want), "{arn}: {e}");
        }
    }
}
