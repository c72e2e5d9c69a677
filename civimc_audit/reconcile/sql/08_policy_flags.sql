-- Step 8 — flags (they never change the outcome) and the policy option honor_civicrm_consent
-- (off by default, so the default predicts the sync extension, which ignores consent fields).
--   consent_conflict    the contact is do_not_email / is_opt_out / is_deceased, yet would be or
--                       stay subscribed at Mailchimp after this outcome
--   duplicate_contacts  the address has more than one live owner (matching rule)
--   contact_deleted     the member's address belongs to a trashed contact
--   civicrm_pending     the group_contact row (or latest history) is Pending
--   no_civicrm_history  in the group's table but no history: the sync never acts on these
--   needs_confirmation  R7 for an unsubscribed member: only `pending` is possible
--   email_differs       the member's address is not the contact's best email
-- With honor_civicrm_consent, a consent conflict becomes unsubscribe (member MC-in) or not-add.
CREATE OR REPLACE TEMP TABLE flagged AS
WITH f AS (
    SELECT r.*,
        consent_withheld AND (
            rule_outcome IN ('add_to_mailchimp', 'resubscribe_in_mailchimp')
            OR (mc_in AND rule_outcome IN ('no_change', 'add_to_civicrm_group', 'cannot_sync'))
        ) AS consent_conflict,
        (rule = 'R7' AND mailchimp_status = 'unsubscribed' AND reason_code IS NULL)
            AS needs_confirmation,
        contact_id IS NOT NULL AND gc_status IS NOT NULL AND NOT has_history AS no_civicrm_history,
        coalesce(gc_status = 'Pending' OR history_status = 'Pending', false) AS civicrm_pending,
        has_member AND contact_id IS NOT NULL AND best_norm IS NOT NULL
            AND best_norm <> member_norm AS email_differs
    FROM ruled2 r
)
SELECT f.*,
    CASE
        WHEN getvariable('honor_civicrm_consent') AND consent_conflict AND mc_in
             AND rule_outcome <> 'cannot_sync' THEN 'unsubscribe_in_mailchimp'
        WHEN getvariable('honor_civicrm_consent') AND consent_conflict
             AND rule_outcome IN ('add_to_mailchimp', 'resubscribe_in_mailchimp') THEN 'no_change'
        ELSE rule_outcome
    END AS outcome,
    getvariable('honor_civicrm_consent') AND consent_conflict
        AND rule_outcome <> 'cannot_sync' AS consent_applied,
    concat_ws(' ',
        CASE WHEN duplicate_contacts THEN 'duplicate_contacts' END,
        CASE WHEN contact_deleted THEN 'contact_deleted' END,
        CASE WHEN consent_conflict THEN 'consent_conflict' END,
        CASE WHEN civicrm_pending THEN 'civicrm_pending' END,
        CASE WHEN no_civicrm_history THEN 'no_civicrm_history' END,
        CASE WHEN needs_confirmation THEN 'needs_confirmation' END,
        CASE WHEN email_differs THEN 'email_differs' END
    ) AS flags
FROM f;
