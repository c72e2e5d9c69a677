"""civimc-sandbox: everything that exists to try or test civimc-audit without a real CiviCRM or
Mailchimp — the Mailchimp emulator, the CiviCRM fixture and its schema, generated populations,
the local MariaDB starter and the demo. The product (civimc_audit) never imports it."""
