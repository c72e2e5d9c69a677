-- Step 9 — the outcome rows (DESIGN "Outcome rows"), each with a reason a person can read
-- without the rules table: which date decided, and what happens. Ordered deterministically so
-- the result does not depend on the order rows arrived in.
CREATE OR REPLACE TEMP TABLE worded AS
SELECT f.*,
    strftime(civicrm_changed, '%-d %b %Y') AS cdate,
    strftime(mailchimp_changed, '%-d %b %Y') AS mdate,
    CASE history_status
        WHEN 'Added' THEN 'added' WHEN 'Removed' THEN 'removed'
        WHEN 'Pending' THEN 'marked pending' WHEN 'Deleted' THEN 'deleted'
        ELSE lower(history_status)
    END AS hverb
FROM flagged f;

CREATE OR REPLACE TEMP TABLE reasoned AS
SELECT w.*,
    CASE
        WHEN NOT has_member AND has_history
            THEN 'Not in the Mailchimp audience; CiviCRM ' || hverb || ' them on ' || cdate
        WHEN NOT has_member
            THEN 'Not in the Mailchimp audience; CiviCRM lists them as ' || lower(gc_status)
                 || ' with no subscription history'
        WHEN contact_id IS NULL
            THEN 'Mailchimp ' || mailchimp_status || coalesce(' on ' || mdate, '')
                 || '; no CiviCRM contact has this address'
        WHEN NOT has_history
            THEN 'Mailchimp ' || mailchimp_status || coalesce(' on ' || mdate, '')
                 || '; CiviCRM has no subscription history for this group, so Mailchimp decides'
        WHEN mailchimp_changed IS NULL
            THEN 'CiviCRM ' || hverb || ' them on ' || cdate
                 || '; Mailchimp has no change date, so CiviCRM decides'
        WHEN tie
            THEN 'CiviCRM ' || hverb || ' them on ' || cdate || ' in the same second as '
                 || 'Mailchimp''s last change (' || mailchimp_status || '); a tie goes to '
                 || CASE winner WHEN 'civicrm' THEN 'CiviCRM' ELSE 'Mailchimp (policy)' END
        WHEN winner = 'civicrm'
            THEN 'CiviCRM ' || hverb || ' them on ' || cdate || ', after Mailchimp '
                 || mailchimp_status || ' on ' || mdate
        ELSE 'Mailchimp ' || mailchimp_status || ' on ' || mdate || ', after CiviCRM '
             || hverb || ' them on ' || cdate
    END AS why,
    CASE
        WHEN consent_applied AND outcome = 'unsubscribe_in_mailchimp'
            THEN 'but CiviCRM says not to email them, so (honor_civicrm_consent) unsubscribe '
                 || 'in Mailchimp'
        WHEN consent_applied
            THEN 'but CiviCRM says not to email them, so (honor_civicrm_consent) leave them '
                 || 'out of Mailchimp'
        WHEN reason_code = 'other_email_subscribed'
            THEN 'but another of their addresses is subscribed at Mailchimp, so they cannot be '
                 || 'removed from the group'
        WHEN reason_code = 'no_usable_email'
            THEN 'but they have no email address that is not on hold, so they cannot be added '
                 || 'to Mailchimp'
        WHEN reason_code = 'email_shared_with_other_contact'
            THEN 'but their address ' || best_email || ' is already the Mailchimp member of '
                 || 'another contact, so they cannot be added'
        WHEN reason_code = 'email_on_hold'
            THEN 'but the address is on hold in CiviCRM, so they cannot be resubscribed'
        WHEN reason_code = 'cleaned_at_mailchimp'
            THEN 'but Mailchimp cleaned the address (it bounced) and will not resubscribe it'
        WHEN rule IN ('R1', 'R5') THEN 'subscribed on both sides: nothing to do'
        WHEN rule IN ('R4', 'R10') THEN 'not subscribed on either side: nothing to do'
        WHEN rule = 'R2' THEN 'remove from the CiviCRM group'
        WHEN rule = 'R3' AND contact_id IS NULL
            THEN 'create a CiviCRM contact and add it to the group'
        WHEN rule = 'R3' THEN 'add to the CiviCRM group'
        WHEN rule = 'R6' THEN 'subscribe ' || best_email || ' in Mailchimp'
        WHEN rule = 'R7' AND needs_confirmation
            THEN 'resubscribe in Mailchimp as pending (Mailchimp emails them to confirm, '
                 || 'because they unsubscribed themselves)'
        WHEN rule = 'R7' THEN 'resubscribe in Mailchimp'
        WHEN rule = 'R9' THEN 'unsubscribe in Mailchimp'
    END AS action
FROM worded w;

INSERT INTO outcomes
SELECT getvariable('reconciliation_id') AS reconciliation_id,
       row_number() OVER (ORDER BY coalesce(member_norm, best_norm) NULLS LAST,
                          contact_id NULLS LAST, member_id NULLS LAST) AS person_id,
       coalesce(email_address, best_email) AS email,
       contact_id,
       member_id,
       display_name,
       mailchimp_status,
       mailchimp_changed,
       coalesce(gc_status, CASE WHEN history_status = 'Deleted' THEN 'Deleted' END)
           AS civicrm_status,
       civicrm_changed,
       history_status AS civicrm_history_status,
       winner,
       outcome,
       rule,
       coalesce(reason_code, '') AS reason_code,
       why || ': ' || action || '.' AS reason,
       flags,
       CASE WHEN outcome = 'add_to_mailchimp' THEN best_email ELSE email_address END
           AS target_email
FROM reasoned;
